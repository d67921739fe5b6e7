"""Shared plotting helpers: a headless matplotlib and atomic PNG saving."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def new_figure(*args, **kwargs):
    """``plt.subplots`` with a constrained layout."""
    kwargs.setdefault("layout", "constrained")
    return plt.subplots(*args, **kwargs)


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG atomically (temp file + rename) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
    return path
