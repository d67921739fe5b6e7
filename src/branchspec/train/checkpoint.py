"""Atomic, safe checkpoints: safetensors weights + a JSON state file.

A checkpoint ``NAME`` is two files written side by side:

* ``NAME.safetensors`` — every tensor (model weights, optimiser moments, RNG
  states as uint8 tensors), stored under dotted names;
* ``NAME.json`` — everything else: the model kind and config (so the model
  can be rebuilt by :func:`branchspec.models.registry.build_model`), step,
  epoch, metrics, scheduler state.

Each file is written to a temporary file in the same folder, flushed and
fsync'ed, then renamed over the target, so a crash never leaves a torn
checkpoint: either the old one or the new one is there. The JSON file is
renamed last and names the weights file, so a reader never sees a JSON
pointing at weights that do not exist. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from branchspec.errors import BranchspecError


class CheckpointError(BranchspecError):
    """A checkpoint is missing, torn or of the wrong kind (one-line message)."""


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights, state)`` paths for a checkpoint given as NAME, NAME.json or NAME.safetensors."""
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
    """Write ``tensors`` (safetensors) and ``state`` (JSON) atomically; returns the JSON path.

    Example:
        >>> import tempfile, torch
        >>> d = tempfile.mkdtemp()
        >>> _ = save_checkpoint(f"{d}/ckpt", {"w": torch.ones(2)}, {"step": 3})
        >>> t, s = load_checkpoint(f"{d}/ckpt")
        >>> t["w"].tolist(), s["step"]
        ([1.0, 1.0], 3)
    """
    wpath, spath = checkpoint_paths(path)
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    blob = _safetensors_bytes(flat)
    _atomic_write(wpath, lambda fh: fh.write(blob))
    doc = dict(state)
    doc["weights_file"] = wpath.name
    text = json.dumps(doc, indent=2, sort_keys=True, default=_json_default).encode()
    _atomic_write(spath, lambda fh: fh.write(text))
    return spath


def _safetensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    # safetensors refuses tensors that share memory; clone those that do.
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return save(out)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`: ``(tensors, state)``."""
    wpath, spath = checkpoint_paths(path)
    if not spath.is_file():
        raise CheckpointError(f"checkpoint not found: {spath}")
    try:
        state = json.loads(spath.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint state {spath} is not valid JSON: {exc}") from None
    wfile = spath.with_name(state.get("weights_file", wpath.name))
    if not wfile.is_file():
        raise CheckpointError(f"checkpoint weights missing: {wfile}")
    try:
        tensors = load_file(str(wfile), device=str(device))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"checkpoint weights {wfile} are unreadable: {exc}") from None
    return tensors, state


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{prefix + '.' + k: v}`` — to store several state dicts in one file."""
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`prefixed`: the entries under ``prefix``, prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def rng_state_tensors() -> dict[str, torch.Tensor]:
    """The torch RNG states (CPU, and CUDA if present) as uint8 tensors, for exact resume."""
    out = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda{i}"] = s
    return out


def restore_rng_state(tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`rng_state_tensors`."""
    if "rng.cpu" in tensors:
        torch.set_rng_state(tensors["rng.cpu"].to(torch.uint8))
    if torch.cuda.is_available():
        states = [tensors[f"rng.cuda{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda{i}" in tensors]
        if states:
            torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in states])


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``opt.state_dict()`` into tensors (for safetensors) and JSON-able rest."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state_meta: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        meta = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v
            else:
                meta[k] = v
        state_meta[str(pid)] = meta
    return tensors, {"param_groups": sd["param_groups"], "state_meta": state_meta}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_to_tensors`: load into ``opt``."""
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for pid, m in meta.get("state_meta", {}).items():
        state.setdefault(int(pid), {}).update(m)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
