"""What every experiment shares: the saved resolved config and summary, and relative figure paths.

``out/experiment.json`` holds ``{"experiment": name, "config": asdict(cfg)}``
and ``out/summary.json`` the scalars ``run`` returned; a ``section`` reads
them back with :func:`load`. (``experiment.json`` and not ``config.json``:
a training run folder's ``config.json`` is the training config that
``--resume`` reads, and an experiment may write into such a folder.)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path

from branchspec.io import atomic_write_json

CONFIG_FILE = "experiment.json"
SUMMARY_FILE = "summary.json"


def _plain(obj):
    if is_dataclass(obj):
        return {k: _plain(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save(out: Path, name: str, cfg, summary: dict) -> dict:
    """Write ``experiment.json`` (``cfg`` resolved) and ``summary.json``; returns ``summary``.

    Under torchrun only the process of rank 0 writes."""
    if int(os.environ.get("RANK", "0")) != 0:
        return summary
    out = Path(out)
    atomic_write_json(out / CONFIG_FILE, {"experiment": name, "config": _plain(cfg)})
    atomic_write_json(out / SUMMARY_FILE, _plain(summary))
    return summary


def load(out: Path) -> tuple[dict, dict]:
    """``(config, summary)`` saved by :func:`save` under ``out``."""
    out = Path(out)
    cfg = json.loads((out / CONFIG_FILE).read_text())["config"]
    summary = json.loads((out / SUMMARY_FILE).read_text())
    return cfg, summary


def relative(out: Path, path) -> str:
    """``path`` relative to the report folder ``out.parent`` (a section lives in ``REPORT/<key>/``);
    a path outside that folder (a checkpoint named in a note) is returned as it is."""
    try:
        return str(Path(path).resolve().relative_to(Path(out).resolve().parent))
    except ValueError:
        return str(path)


def int_list(ms) -> str:
    """``2-30`` for a contiguous run of M, else ``2,3,5``: the --branches text of a command line."""
    ms = sorted(int(m) for m in ms)
    if len(ms) > 2 and ms == list(range(ms[0], ms[-1] + 1)):
        return f"{ms[0]}-{ms[-1]}"
    return ",".join(map(str, ms))
