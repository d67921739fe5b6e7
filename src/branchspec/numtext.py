"""Numbers as short report text, whatever a JSON file holds (bottom floor: imports nothing of branchspec).

Report tables are filled from saved JSON, which may hold an integer too large
for a float (``10**400``), ``Infinity``, a string where a number was expected,
or nothing. :func:`number` turns each into text instead of raising.

Example:
    >>> number(0.123456, ".3f"), number(10**400), number(None), number("n", ".2f")
    ('0.123', '1.000e+400', 'n/a', 'n')
"""

from __future__ import annotations

import math

MAX_EXACT_DIGITS = 15  # integers longer than this are shown in scientific notation
MAX_TEXT = 200  # anything else is cut to this many characters


def number(v, spec: str | None = None, missing: str = "n/a") -> str:
    """``format(v, spec)`` for a number (default: an integer exactly up to 15 digits, a float ``.4g``);
    an integer too large for ``spec`` or the table in scientific notation; ``None`` → ``missing``; anything
    else (a string, a list) ``str(v)`` cut to 200 characters."""
    if v is None:
        return missing
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        text = str(v)
        return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"
    if isinstance(v, int) and spec is None and abs(v) >= 10**MAX_EXACT_DIGITS:
        return _scientific(v)
    try:
        return format(v, spec if spec is not None else ("d" if isinstance(v, int) else ".4g"))
    except OverflowError:  # an integer too large for a float format
        return _scientific(v)
    except (TypeError, ValueError):  # a format spec for another type
        return str(v)


def _scientific(v: int) -> str:
    if v == 0:
        return "0"
    e = int(math.log10(abs(v)))  # math.log10 takes integers of any size
    m = v / 10**e  # correctly rounded true division of two integers
    if abs(m) >= 10:
        e, m = e + 1, v / 10 ** (e + 1)
    return f"{m:.3f}e+{e}"
