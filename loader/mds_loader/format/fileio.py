"""Writing local files atomically: readers see the old file or the complete new one, never a
partial file, and a crash leaves at most a hidden temporary file (never a complete-looking one)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["write_file_atomic"]


def write_file_atomic(path: str | os.PathLike, content: bytes | Callable[[BinaryIO], None]) -> str:
    """Creates or replaces `path` through a temporary file in the same directory and a rename.

    Args:
        path: the file to write (parent directories are created).
        content: the bytes, or a function that writes them into the open binary file it gets.

    Returns:
        `path` as a string.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
