"""The ``mds`` commands that read a dataset: inspect, validate, head, vacuum."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import MDSError
from ..format.index import load_index
from ..inspection import describe, find_unreferenced, head_rows, resolve_dataset, validate_dataset
from ..storage import is_remote
from .render import duration_text, progress_bar, size_text, table_lines, to_json, to_text
from .status import EXIT_INVALID, EXIT_OK, UsageError


# ---------------------------------------------------------------------------- inspect


def cmd_inspect(args: argparse.Namespace) -> int:
    info = describe(resolve_dataset(args.path))
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=False))
        return EXIT_OK
    out: list[str] = []
    if info["schema_source"] == "spark_mds":
        schema = f"spark_mds logical schema (format_version {info['format_version']})"
    else:
        schema = "inferred from the MDS encodings (no spark_mds key; docs/format.md §4)"
    per = info["samples_per_shard"]
    shards = f"{info['num_shards']}"
    if per:
        shards += f" ({per['min']} samples each)" if per["min"] == per["max"] else f" ({per['min']}..{per['max']} samples each)"
    if info["compressed_bytes"] is not None:
        ratio = info["raw_bytes"] / info["compressed_bytes"] if info["compressed_bytes"] else 0.0
        size = f"{size_text(info['raw_bytes'])} raw, {size_text(info['compressed_bytes'])} compressed ({ratio:.1f}x)"
    else:
        size = f"{size_text(info['raw_bytes'])} raw (not compressed)"
    mask = info["null_mask"]
    rows = [
        ("dataset", info["path"]),
        ("schema", schema),
        ("samples", f"{info['samples']:,}"),
        ("shards", shards),
        ("size", size),
        ("compression", ", ".join(info["compression"]) or "none"),
        ("hashes", ", ".join(info["hashes"]) or "none"),
        ("size limit", ", ".join(size_text(s) if isinstance(s, int) else str(s) for s in info["size_limit"]) or "none"),
        ("null mask", f"{mask['name']} ({mask['mds_encoding']})" if mask else "none"),
    ]
    out += [f"{k:<12} {v}" for k, v in rows]
    cols = info["columns"]
    out += ["", f"columns ({len(cols)})" + (" - Spark types inferred" if info["schema_source"] == "inferred" else "")]
    out += table_lines(
        ["name", "spark type", "mds encoding", "arrow type", "nullable"],
        [[c["name"], c["spark_type"], c["mds_encoding"], c["arrow_type"], "yes" if c["nullable"] else "no"] for c in cols],
    )
    shard_rows = []
    listed = info["shards"] if args.all_shards else info["shards"][:20]
    for s in listed:
        raw, z = s["raw_data"], s["zip_data"]
        shard_rows.append([str(s["shard"]), f"{s['samples']:,}", raw["basename"], f"{raw['bytes']:,}",
                           z["basename"] if z else "-", f"{z['bytes']:,}" if z else "-",
                           ", ".join(sorted((z or raw)["hashes"])) or "-"])  # fmt: skip
    out += ["", f"shards ({info['num_shards']})"]
    out += table_lines(["#", "samples", "raw file", "raw bytes", "compressed file", "compressed bytes", "hashes"], shard_rows)
    if len(listed) < info["num_shards"]:
        out.append(f"  ... {info['num_shards'] - len(listed)} more (--all-shards lists every shard)")
    print("\n".join(out))
    for w in info["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------------------- validate


def cmd_validate(args: argparse.Namespace) -> int:
    path = resolve_dataset(args.path, samples=None)
    total = None
    try:  # only to size the progress bar; validate_dataset reports a bad index itself
        total = sum((s.zip_data or s.raw_data).bytes for s in load_index(path).shards)
    except (MDSError, OSError):
        pass
    with progress_bar(args, total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="validate") as bar:
        report = validate_dataset(path, decode=args.decode, progress=bar.update)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return EXIT_OK if report.valid else EXIT_INVALID
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for e in report.errors:
        print(f"error: {e}", file=sys.stderr)
    if report.hashes:
        hashes = "hashes verified: " + ", ".join(f"{a} ({n} files)" for a, n in sorted(report.hashes.items()))
    else:
        hashes = "no hashes recorded (sizes and structure checked)"
    decoded = f"{report.decoded:,} samples decoded" if args.decode else "samples not decoded (--decode decodes them)"
    summary = (f"{report.shards} shards, {report.samples:,} samples, {size_text(report.stored_bytes)} read; {hashes}; {decoded}")
    if report.valid:
        print(f"valid: {path}: {summary}")
        return EXIT_OK
    details = f"; {summary}" if report.index_ok else ""
    print(f"INVALID: {path}: {len(report.errors)} problem(s) (listed above){details}", file=sys.stderr)
    return EXIT_INVALID


# ---------------------------------------------------------------------------- head


def cmd_head(args: argparse.Namespace) -> int:
    path = resolve_dataset(args.path, samples=args.n)
    try:
        table, samples, reason = head_rows(path, args.n, args.columns)
    except KeyError as exc:
        raise UsageError(exc.args[0] if exc.args else str(exc)) from None
    if table is not None:
        rows = table.to_pylist()
        names = table.column_names
    else:
        assert samples is not None
        print(f"note: {reason}; showing per-sample values as mosaicml-streaming returns them (pkl columns left out)",
              file=sys.stderr)  # fmt: skip
        rows = samples
        names = list(samples[0]) if samples else []
    if args.json:
        for row in rows:
            print(json.dumps({k: to_json(v) for k, v in row.items()}, ensure_ascii=False))
        return EXIT_OK
    print("\n".join(table_lines(["#", *names], [[str(i), *(to_text(r.get(n), args.width) for n in names)] for i, r in enumerate(rows)], indent="")))
    return EXIT_OK


# ---------------------------------------------------------------------------- vacuum


def cmd_vacuum(args: argparse.Namespace) -> int:
    text = os.fspath(args.path)
    if is_remote(text):
        raise UsageError(f"{text}: vacuum works on local dataset directories only")
    path = resolve_dataset(text)
    candidates, warnings = find_unreferenced(path, args.older_than)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    removed = kept = 0
    removed_bytes = 0
    for c in sorted(candidates, key=lambda c: c.path):
        rel = os.path.relpath(c.path, path)
        if not c.old_enough:
            kept += 1
            why = (f"write job {c.running_job} is running: its marker is newer than --older-than" if c.running_job
                   else f"modified {duration_text(c.age_seconds)} ago")
            print(f"kept ({why})  {rel}")
            continue
        if not args.dry_run:
            try:
                os.remove(c.path)
            except FileNotFoundError:  # removed concurrently
                continue
        removed += 1
        removed_bytes += c.bytes
        print(f"{'would remove' if args.dry_run else 'removed'}  {rel}  ({size_text(c.bytes)}, {duration_text(c.age_seconds)} old)")
    verb = "would be removed" if args.dry_run else "removed"
    summary = f"vacuum {path}: {removed} unreferenced file(s) {verb} ({size_text(removed_bytes)})"
    if kept:
        summary += f"; {kept} newer than --older-than {args.older_than_text} kept (a writer may still publish them)"
    print(summary)
    return EXIT_OK
