"""Shared plotting helpers: a headless matplotlib and atomic PNG saving."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from branchspec.io import atomic_write_via


def new_figure(*args, **kwargs):
    """``plt.subplots`` with a constrained layout."""
    kwargs.setdefault("layout", "constrained")
    return plt.subplots(*args, **kwargs)


def drawable(text: str) -> str:
    """``text`` with the bytes of a non-UTF-8 file name (held as surrogates, e.g. a domain folder) shown as
    ``\\xNN``: the font renderer refuses surrogates.

    Example:
        >>> drawable("c\\udce9t")
        'c\\\\xe9t'
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG atomically (:mod:`branchspec.io`) and close it; every text is :func:`drawable`."""
    from matplotlib.text import Text

    try:
        for t in fig.findobj(Text):
            s = t.get_text()
            if isinstance(s, str) and any("\udc80" <= c <= "\udcff" for c in s):
                t.set_text(drawable(s))
        return atomic_write_via(path, lambda buf: fig.savefig(buf, dpi=dpi, format="png"))
    finally:
        plt.close(fig)
