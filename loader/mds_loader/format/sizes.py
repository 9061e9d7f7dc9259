"""Byte sizes as users give them: the one parser behind ``size_limit`` (writers, the CLI, both
Spark sources' options) and ``cache_limit`` / ``predownload``-style loader arguments.

The reference's ``bytes_to_int``: a number of bytes, or a number with a case-insensitive binary
suffix (``b``; ``kb`` = 1024, ``mb``, ``gb``, ... ``yb``), fractions allowed (``"1.5mb"``), the
result truncated toward zero (as the JVM source's ``RoundingMode.DOWN``).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["SIZE_UNITS", "parse_byte_size"]

#: Suffix -> multiplier (binary units, as the reference).
SIZE_UNITS = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40, "pb": 1 << 50, "eb": 1 << 60,
              "zb": 1 << 70, "yb": 1 << 80}  # fmt: skip
_NUMBER = re.compile(r"[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?")


def parse_byte_size(value: int | float | str) -> int:
    """The number of bytes ``value`` stands for (an int, a float, or a text as above).

    Raises:
        ValueError: not a size (the message says why, for the caller to name its option).
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number of bytes")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a number of bytes or a string like '64mb', got {type(value).__name__}")
    text = value.strip().lower()
    number, multiplier = text, 1
    for suffix, unit in SIZE_UNITS.items():
        if text.endswith(suffix):
            number, multiplier = text[: -len(suffix)].strip(), unit
            break
    else:
        if text.endswith("b"):
            number = text[:-1].strip()
    if not _NUMBER.fullmatch(number):  # (no sign: a size is never negative)
        raise ValueError("not a number")
    try:
        return int(Decimal(number) * multiplier)
    except (InvalidOperation, OverflowError):
        raise ValueError("not a number") from None
