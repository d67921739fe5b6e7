"""Argument checks shared by the sub-commands: each failure is one UsageError line."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from branchspec.errors import UsageError


def writable_dir(path: str | os.PathLike, arg: str = "--out") -> Path:
    """Create ``path`` if needed and prove it is writable, else a UsageError naming ``arg``."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{arg}: {p} exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"{arg}: cannot write to {p} ({exc.strerror or exc})") from None
    return p


def existing_dir(path: str | os.PathLike, arg: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"{arg}: no such folder: {p}")
    return p


def existing_file(path: str | os.PathLike, arg: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{arg}: no such file: {p}")
    return p


def at_least(value: int | float, minimum: int | float, arg: str):
    if value < minimum:
        raise UsageError(f"{arg} must be >= {minimum}, got {value}")
    return value


def int_range(text: str, arg: str) -> list[int]:
    """Parse ``"2-30"``, ``"10"`` or ``"2,4,8"`` into a sorted list of distinct ints."""
    text = (text or "").strip()
    if not text:
        raise UsageError(f"{arg}: empty range")
    out: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise UsageError(f"{arg}: range {part!r} is empty (end before start)")
                out.update(range(lo_i, hi_i + 1))
            else:
                out.add(int(part))
    except ValueError:
        raise UsageError(f"{arg}: malformed range {text!r} (use e.g. 2-30 or 2,4,8)") from None
    return sorted(out)
