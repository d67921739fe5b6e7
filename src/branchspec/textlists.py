"""Lists written as text, as a command line or a config file gives them: ranges of M, (branch, class) pairs.

Each parser returns the values or raises ValueError with the reason (no field, no flag): a config field
names one of them as its ``parse`` function (:func:`branchspec.options.option`), and the option machinery
turns the refusal into a :class:`~branchspec.errors.ConfigError` of that field.

Example:
    >>> int_range("2-5,8")
    [2, 3, 4, 5, 8]
    >>> pairs("10:7,14:7")
    ((10, 7), (14, 7))
"""

from __future__ import annotations

MAX_VALUE = 4096  # a value of M: the paper uses up to 32; the same limit as the commands' --branches
MAX_COUNT = 10_000  # values in one range


def int_range(text: str, max_value: int = MAX_VALUE, max_count: int = MAX_COUNT) -> list[int]:
    """Parse ``"2-30"``, ``"10"`` or ``"2,4,8"`` into a sorted list of distinct ints.

    Bounds (``max_value``, ``max_count``) are checked *before* a range is expanded.

    Example:
        >>> int_range("4,2,2-3")
        [2, 3, 4]
    """
    text = (text or "").strip()
    if not text:
        raise ValueError("empty range")
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                lo_i, hi_i = int(lo), int(hi)
            else:
                lo_i = hi_i = int(part)
        except ValueError:
            raise ValueError(f"malformed range {text!r} (use e.g. 2-30 or 2,4,8)") from None
        if hi_i < lo_i:
            raise ValueError(f"range {part!r} is empty (end before start)")
        if hi_i > max_value:
            raise ValueError(f"{hi_i} is over the limit of {max_value}")
        if hi_i - lo_i + 1 + len(out) > max_count:
            raise ValueError(f"more than {max_count} values")
        out.update(range(lo_i, hi_i + 1))
    return sorted(out)


def int_set(text: str) -> tuple[int, ...]:
    """:func:`int_range` as a tuple of M >= 1 (the values of M of a sweep).

    Example:
        >>> int_set("2-4")
        (2, 3, 4)
    """
    ms = int_range(text)
    if ms[0] < 1:
        raise ValueError(f"every M must be >= 1, got {ms[0]}")
    return tuple(ms)


def pairs(text: str) -> tuple[tuple[int, int], ...]:
    """``"10:7,14:7"`` → ``((10, 7), (14, 7))``: (branch, class) pairs.

    Example:
        >>> pairs("3:1")
        ((3, 1),)
    """
    out = []
    for part in text.split(","):
        try:
            k, c = part.split(":")
            out.append((int(k), int(c)))
        except ValueError:
            raise ValueError(f"malformed pair {part!r} (use BRANCH:CLASS, e.g. 10:7)") from None
    return tuple(out)


__all__ = ["int_range", "int_set", "pairs", "MAX_VALUE", "MAX_COUNT"]
