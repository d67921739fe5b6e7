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


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG atomically (:mod:`branchspec.io`) and close it."""
    try:
        return atomic_write_via(path, lambda buf: fig.savefig(buf, dpi=dpi, format="png"))
    finally:
        plt.close(fig)
