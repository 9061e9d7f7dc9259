"""`mds` as a program: help, version, usage errors, exit statuses, one-line errors, the path seam."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cli_support import MDS, call, run_mds
from support import copy_reference_dataset
from mds_loader.inspection import resolve_dataset


def test_console_script_help_and_version():
    assert MDS.exists()
    proc = run_mds("--help")
    assert proc.returncode == 0
    for command in ("inspect", "validate", "head", "convert", "vacuum"):
        assert command in proc.stdout
    assert "Exit status: 0 success, 1 invalid dataset or data error, 2 usage error" in proc.stdout.replace("\n", " ")
    proc = run_mds("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("mds (mds-loader) ")


def test_python_dash_m_runs_the_same_program():
    """``python -m mds_loader.cli`` where the console script is not on the PATH."""
    proc = subprocess.run([sys.executable, "-m", "mds_loader.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("mds (mds-loader) "), proc.stderr


@pytest.mark.parametrize("command", ["inspect", "validate", "head", "convert", "vacuum"])
def test_every_command_has_help(capsys, command):
    rc, out, _ = call(capsys, command, "--help")
    assert rc == 0
    assert out.startswith(f"usage: mds {command}")


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["inspect"], ["head", "x", "-n", "-3"], ["convert", "only-src"]])
def test_usage_errors_exit_2(capsys, argv):
    rc, out, err = call(capsys, *argv)
    assert rc == 2
    assert "usage: mds" in err


def test_error_is_one_line_without_traceback_and_debug_adds_it(tmp_path):
    proc = run_mds("inspect", tmp_path / "missing")
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"mds inspect: error: {tmp_path / 'missing'}: no such file or directory"
    assert "Traceback" not in proc.stderr
    proc = run_mds("--debug", "inspect", tmp_path / "missing")
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.strip().endswith("no such file or directory")


def test_not_a_dataset_directory(capsys, tmp_path):
    (tmp_path / "data.txt").write_text("hello")
    rc, _, err = call(capsys, "validate", tmp_path)
    assert rc == 1
    assert err.strip() == f"mds validate: error: {tmp_path}: no index.json here, so this is not an MDS dataset directory"
    rc, _, err = call(capsys, "head", tmp_path / "data.txt")
    assert rc == 1 and "not a directory" in err


def test_resolve_dataset_is_the_one_path_seam(tmp_path):
    ds = copy_reference_dataset("scalars", tmp_path)
    assert resolve_dataset(ds) == str(ds)
    assert resolve_dataset(ds / "index.json") == str(ds)  # the index file names its dataset
    assert resolve_dataset(f"file://{ds}") == str(ds)


@pytest.mark.parametrize("command", ["inspect", "validate", "head"])
def test_remote_urls_are_mirrored(capsys, tmp_path, command):
    """URLs go through fsspec (here its in-process memory filesystem; S3 in tests/remote)."""
    import pyarrow as pa

    from mds_loader import write_table

    url = f"memory://cli-{command}/ds"
    write_table(pa.table({"id": list(range(10)), "name": [f"n{i}" for i in range(10)]}), url, hashes=["xxh64"])
    rc, out, err = call(capsys, command, url)
    assert rc == 0, err
    expected = {"inspect": "samples      10", "validate": "valid: ", "head": "n4"}[command]
    assert expected in out
