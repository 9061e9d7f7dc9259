"""File hashes of index.json: the algorithms mosaicml-streaming 0.13.0 allows, as hex digests.

Allowed names are the ``hashlib`` algorithms that are attributes of ``hashlib`` (so
``hashlib.md5`` but not OpenSSL-only aliases), except ``shake_*`` (variable length), plus the
``xxhash`` algorithms ``xxh32``, ``xxh64``, ``xxh128``, ``xxh3_64`` and ``xxh3_128``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Callable

from ..errors import MDSChecksumError, MDSConfigError

__all__ = ["hash_names", "is_hash", "get_hash", "check_hashes", "verify_hash"]

_XXHASH = ("xxh32", "xxh64", "xxh128", "xxh3_64", "xxh3_128")


@lru_cache(maxsize=None)
def _functions() -> dict[str, Callable[[Any], Any]]:
    import xxhash

    funcs: dict[str, Callable[[Any], Any]] = {}
    for name in hashlib.algorithms_available:
        if hasattr(hashlib, name) and not name.startswith("shake_"):
            funcs[name] = getattr(hashlib, name)
    for name in _XXHASH:
        funcs[name] = getattr(xxhash, name)
    return funcs


def hash_names() -> frozenset[str]:
    """Every supported hash algorithm name."""
    return frozenset(_functions())


def is_hash(name: str) -> bool:
    """Whether ``name`` is a supported hash algorithm."""
    return isinstance(name, str) and name in _functions()


def get_hash(name: str, data: bytes | bytearray | memoryview) -> str:
    """The lowercase hex digest of ``data`` under algorithm ``name``.

    Raises:
        MDSConfigError: unknown algorithm.
    """
    func = _functions().get(name)
    if func is None:
        raise MDSConfigError(f"unknown hash algorithm {name!r}; use one of {sorted(_functions())}")
    return func(data).hexdigest()


def check_hashes(hashes: Iterable[str] | None) -> list[str]:
    """Validates a writer's ``hashes`` argument like the reference: known names, sorted order.

    Returns:
        The list of names (empty for None).

    Raises:
        MDSConfigError: a name is unknown, or the list is not sorted.
    """
    if hashes is None:
        return []
    if isinstance(hashes, str):
        raise MDSConfigError(f"hashes must be a list of algorithm names, got the string {hashes!r}")
    names = list(hashes)
    for name in names:
        if not is_hash(name):
            raise MDSConfigError(f"unknown hash algorithm {name!r}; use some of {sorted(_functions())}")
    if names != sorted(names):
        raise MDSConfigError(f"hashes must be in sorted order (the reference requires it): use {sorted(names)}")
    return names


def verify_hash(name: str, data: bytes | bytearray | memoryview, expected: Mapping[str, str], path: str) -> None:
    """Checks that ``data`` (the content of file ``path``) has the digest ``expected[name]``.

    Raises:
        MDSChecksumError: the index has no ``name`` digest for this file, or it differs.
        MDSConfigError: ``name`` is not a supported algorithm.
    """
    if name not in expected:
        advice = (f"it has {', '.join(sorted(expected))}: choose one of those" if expected
                  else "it records none for it: read without validating hashes")
        raise MDSChecksumError(f"{path}: cannot verify with {name!r}: the index has no {name} hash for this file; {advice}")
    actual = get_hash(name, data)
    if actual != expected[name]:
        raise MDSChecksumError(
            f"{path}: {name} checksum mismatch (expected {expected[name]}, got {actual}); the file is "
            f"corrupt or was replaced: delete it and fetch it again"
        )
