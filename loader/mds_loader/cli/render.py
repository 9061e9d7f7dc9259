"""How the ``mds`` commands show things: sizes, durations, tables, values as JSON or text, progress bars."""

from __future__ import annotations

import argparse
import base64
import datetime
import decimal
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np


# ---------------------------------------------------------------------------- formatting


def size_text(n: int | None) -> str:
    """``1536`` -> ``1.5 KiB``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError


def duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def table_lines(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Left-aligned text columns."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = [indent + "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return lines


def to_json(v: Any) -> Any:
    """A JSON-ready form of a value read from a dataset: bytes as base64 text, decimals and
    dates as text, NaN/infinities as the strings of docs/format.md §5, arrays as lists."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, np.ndarray):
        return to_json(v.tolist())
    if isinstance(v, np.generic):
        return to_json(v.item())
    if isinstance(v, dict):
        return {str(k): to_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    if isinstance(v, (datetime.date, datetime.datetime, datetime.time)):
        return v.isoformat()
    if isinstance(v, datetime.timedelta):
        return str(v)
    if isinstance(v, decimal.Decimal):
        return str(v)
    return describe_object(v)


def describe_object(v: Any) -> str:
    if type(v).__module__.startswith("PIL."):
        return f"<PIL image {getattr(v, 'format', None) or ''} {v.mode} {v.size[0]}x{v.size[1]}>".replace("  ", " ")
    return f"<{type(v).__name__}>"


def to_text(v: Any, width: int) -> str:
    """A one-line, at most ``width`` characters, form of a value for ``mds head``."""
    if v is None:
        text = "null"
    elif isinstance(v, str):
        text = v
    elif isinstance(v, (bytes, bytearray)):
        text = repr(bytes(v))
    elif isinstance(v, np.ndarray):
        text = f"ndarray[{v.dtype}{list(v.shape)}] {json.dumps(to_json(v))}"
    elif isinstance(v, np.generic):
        text = repr(v.item())
    elif isinstance(v, (list, tuple, dict)):
        text = json.dumps(to_json(v), ensure_ascii=False)
    elif isinstance(v, float):
        text = repr(v)
    elif isinstance(v, (int, bool, decimal.Decimal, datetime.date, datetime.datetime, datetime.timedelta)):
        text = str(v)
    else:
        text = describe_object(v)
    text = text.replace("\n", "\\n").replace("\t", "\\t")
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


# ---------------------------------------------------------------------------- progress


def progress_enabled(args: argparse.Namespace) -> bool:
    """``--progress``/``--no-progress``, by default on when stderr is a terminal."""
    if args.progress is not None:
        return bool(args.progress)
    return sys.stderr.isatty()


def progress_bar(args: argparse.Namespace, **kwargs: Any) -> Any:
    from tqdm.auto import tqdm

    return tqdm(file=sys.stderr, disable=not progress_enabled(args), dynamic_ncols=True, **kwargs)
