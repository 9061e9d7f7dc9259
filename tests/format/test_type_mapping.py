"""The Python format core against the type table of docs/format.md (docs/type-mapping.json):
default encodings when writing, logical types when reading without a schema, on real datasets."""

from __future__ import annotations

import pytest

from mds_loader.format import MDSDataset, parse_encoding
from mds_loader.format.schema import NdarrayInfo, arrow_from_logical, default_encoding, natural_logical
from type_mapping import READ, WRITE, expected_read_types, normalized, write_read_datasets


@pytest.mark.parametrize("entry", WRITE, ids=lambda e: str(e["type"])[:60])
def test_default_encodings(entry):
    t = entry["type"]
    assert default_encoding(t) == entry["encoding"]
    assert default_encoding(t, arrow_from_logical(t)) == entry["encoding"]  # from Arrow data of that type


@pytest.mark.parametrize("entry", READ, ids=lambda e: f"{e['encoding']}-{e.get('sample', '')}")
def test_types_read_without_a_schema(entry):
    sample = entry.get("sample")
    info = NdarrayInfo(*sample) if sample else None
    assert natural_logical(parse_encoding(entry["encoding"]), info) == entry["type"]


def test_datasets_read_as_the_table_says(tmp_path):
    """The datasets the Spark suite checks too: the first sample's dtype and depth, or none."""
    one, empty = write_read_datasets(tmp_path)
    for path, types in expected_read_types(one, empty).items():
        with MDSDataset(path) as ds:
            infos = ds.ndarray_infos()
            encodings = dict(zip(ds.shards[0].column_names, ds.shards[0].encodings))
            got = {c: natural_logical(encodings[c], infos.get(c)) for c in types}
        assert normalized(got) == normalized(types), path
