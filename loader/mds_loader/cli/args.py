"""Argument types of the ``mds`` command line: each parses one option's text or says why it cannot."""

from __future__ import annotations

import argparse
import re

from ..errors import MDSConfigError, MDSEncodingError
from ..format.compression import get_codec
from ..format.encodings import parse_encoding
from ..format.hashing import hash_names, is_hash
from ..format.write_options import parse_size_limit


# ---------------------------------------------------------------------------- argument types


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*(s|sec|m|min|h|d|w)?\s*", re.IGNORECASE)
_DURATION_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"90"`` / ``"90s"`` / ``"30m"`` / ``"1h"`` / ``"2d"`` / ``"1w"`` -> seconds."""
    m = _DURATION_RE.fullmatch(text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}; use e.g. 90s, 30m, 1h, 2d")
    return float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "").lower() or None]


def compression(text: str) -> str | None:
    if text.lower() in ("none", "no", ""):
        return None
    try:
        get_codec(text)
    except MDSConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def hashes(text: str) -> list[str]:
    names = sorted({h.strip() for h in text.split(",") if h.strip()})  # the reference wants them sorted
    unknown = [h for h in names if not is_hash(h)]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown hash algorithm(s) {unknown}; use some of {', '.join(sorted(hash_names()))}")
    return names


def size_limit(text: str) -> int | None:
    if text.lower() in ("none", "0"):
        return None
    try:
        return parse_size_limit(text)
    except MDSConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def override(text: str) -> tuple[str, str]:
    name, sep, encoding = text.partition("=")
    if not sep or not name or not encoding:
        raise argparse.ArgumentTypeError(f"expected NAME=ENCODING (e.g. image=jpeg, emb=ndarray:float32:16), got {text!r}")
    try:
        parse_encoding(encoding)
    except MDSEncodingError as exc:
        raise argparse.ArgumentTypeError(f"column {name!r}: {exc}") from None
    return name, encoding


def column_list(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of column names")
    return names
