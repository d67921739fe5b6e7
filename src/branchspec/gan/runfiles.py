"""Files of a GAN run (paper §7): sample grids, checkpoint rotation, and what ``--resume`` checks.

Example:
    >>> import tempfile, pathlib, torch
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> save_image_grid(torch.zeros(2, 3, 3, 8, 8), d / "grid.png")  # 2 rows × 3 columns
    >>> (d / "grid.png").is_file()
    True
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from branchspec.io import atomic_write_text, atomic_write_via
from branchspec.checkpoint import CheckpointError, ResumeMismatch, check_runtime, checkpoint_paths
from branchspec.gan.config import resume_mismatch
from branchspec.models.generator import generator_labels
from branchspec.parts import Tracker, branches

_STEP = re.compile(r"^step-(\d+)$")


def save_image_grid(grid: Tensor, path: Path, pad: int = 2) -> None:
    """Save ``(rows, cols, C, S, S)`` images in [-1, 1] as one PNG with white gutters (atomic)."""
    from PIL import Image

    n, m, c, s, _ = grid.shape
    img = np.full((n * (s + pad) + pad, m * (s + pad) + pad, 3), 255, dtype=np.uint8)
    arr = ((grid.float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()  # (N, M, C, S, S)
    for i in range(n):
        for j in range(m):
            tile = arr[i, j].transpose(1, 2, 0)
            img[pad + i * (s + pad): pad + i * (s + pad) + s, pad + j * (s + pad): pad + j * (s + pad) + s] = (
                tile if c == 3 else np.repeat(tile, 3, axis=2)
            )
    atomic_write_via(path, lambda buf: Image.fromarray(img).save(buf, format="PNG"))


def step_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """``(step, base path)`` of every ``step-N`` checkpoint in ``ckpt_dir``, oldest first."""
    found: dict[int, Path] = {}
    if ckpt_dir.is_dir():
        for p in ckpt_dir.iterdir():
            m = _STEP.match(p.name.split(".")[0])
            if m and not p.name.startswith("."):
                found[int(m.group(1))] = ckpt_dir / m.group(0)
    return sorted(found.items())


def rotate_checkpoints(ckpt_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` ``step-N`` checkpoints (0: keep all); returns the removed bases.

    ``last`` is never touched: it is a separate copy of the newest step.
    """
    if keep_last <= 0:
        return []
    ckpts = step_checkpoints(ckpt_dir)
    removed = []
    for _, base in ckpts[:-keep_last]:
        for f in checkpoint_paths(base):
            f.unlink(missing_ok=True)
        removed.append(base)
    return removed


def save_sample_grid(gen, x: Tensor, labels: Tensor, out: Path, step: int) -> Path:
    """``out/samples/step-NNNNNN.png``: one row per image, input | G(x, own domain) | R (EMA generator)."""
    import torch

    f, _, r = gen.forward_all(x, labels)
    grid = torch.stack([x, f] + ([r] if r is not None else []), 1)  # (N, 3 cols, C, S, S)
    path = Path(out) / "samples" / f"step-{step:06d}.png"
    save_image_grid(grid, path)
    return path


def check_resume(state: dict, cfg, data, path) -> None:
    """Refuse, in one line, to resume the checkpoint ``state`` (at ``path``) with another config, other domains,
    other data (image and per-domain counts: 6 images trained, 11 given is a different run) or other runtime
    settings (threads, world size: :func:`~branchspec.checkpoint.check_runtime`)."""
    saved = state.get("train_config")
    if not isinstance(saved, dict) or "opt_g" not in state:
        raise CheckpointError(f"{path} is not a train-gan checkpoint")
    bad = resume_mismatch(saved, cfg)
    if bad:
        k, old, new = bad
        raise ResumeMismatch(f"the run was trained with {k}={old!r}, now {new!r}")
    if state.get("domains") != list(data.domains):
        raise ResumeMismatch(f"domains changed ({state.get('domains')} -> {data.domains})")
    rec, now = state.get("data"), {"images": len(data), "per_domain": data.counts()}
    if isinstance(rec, dict) and any(k in rec and rec[k] != v for k, v in now.items()):
        raise ResumeMismatch(f"the run was trained on {rec.get('images')} images ({rec.get('per_domain')}), "
                             f"`data` now gives {now['images']} ({now['per_domain']}); resume with the same "
                             "data or start a new run")
    check_runtime(state)


def log_window_from(saved: Any, path, step: int, log_every: int) -> dict[str, list[float]]:
    """The unfinished log window of a checkpoint at ``step``: ``{loss name: [value per step]}`` of the steps since
    the last multiple of ``log_every`` (which may change on resume); older checkpoints hold none."""
    if not isinstance(saved, dict) or not all(
            isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
            for v in saved.values()):
        raise CheckpointError(f"checkpoint {path}: log_window must map loss names to lists of numbers")
    keep = step % log_every
    return {str(k): [float(x) for x in v][len(v) - keep:] if keep else [] for k, v in saved.items()}


def trim_log(path: Path, step: int) -> None:
    """Drop the ``log.jsonl`` lines of steps after ``step`` (and a torn last line): a run killed between a log
    line and the checkpoint of its step wrote a line that the resumed run writes again."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)

    def step_of(line: str) -> float:
        try:
            return float(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            return float("inf")  # torn or foreign: not a line of a finished step

    keep = [line for line in lines if line.endswith("\n") and step_of(line) <= step]
    if len(keep) != len(lines):
        atomic_write_text(path, "".join(keep))


def make_gan_tracker(trainer: Any, every: int, n: int = 16) -> Any:
    """A :class:`~branchspec.parts.Tracker` of G's branches (RUN/tracker.csv, .jsonl) every ``every`` steps on a
    fixed batch: the first ``n`` training images, each sent to the next domain (a transfer), in G's precision."""
    idx = torch.arange(min(n, len(trainer.data)))
    x, y = trainer.data.batch(idx, trainer.device)  # (n, C, S, S), (n,)
    labels = generator_labels(trainer.G, y, (y + 1) % len(trainer.data.domains))
    tracker = Tracker(branches(trainer.G), trainer.out, every=every, eval_batches=[(x, labels)],
                      model_args=lambda b: (b[1],))
    tracker.resume_at(trainer.step)  # records past the checkpoint (a killed run's) dropped; counts on from here
    return tracker
