"""Checkpoints that cannot tear: one safetensors file holding the tensors *and* the state.

A checkpoint ``NAME`` is one atomic unit, ``NAME.safetensors``:

* its tensors are every array of the run (model weights and buffers,
  optimiser moments, RNG states as uint8 tensors) under dotted names;
* its header metadata ``branchspec_state`` is the JSON of everything else:
  the model kind and config (so :func:`branchspec.models.registry.build_model`
  can rebuild it), step, epoch, metrics, optimiser hyper-parameters, and the
  ``runtime`` settings that change a trajectory (torch threads, see
  :func:`check_runtime`).

The file is written by :func:`branchspec.io.atomic_write_bytes` (temporary
file in the same folder, fsync, rename, folder fsync; stale temporaries of a
killed writer removed), so a crash at any instant leaves either the old or
the new checkpoint, never weights of one step beside the state of another.
``NAME.json`` is then written (also atomically) as a readable copy of the
state; loaders read the state from the ``.safetensors`` file, so a JSON left
one save behind by a crash is harmless. The weights of ``X.json`` are
``X.safetensors`` beside it, whatever X is, so ``cp last.* best.*`` gives a
``best`` that loads its own weights. Files of the previous format (state only
in the JSON) still load, and the configs a state records (``train_config``, the
model's ``config``) read in today's spelling
(:func:`branchspec.options.current_values`: ``engine: "auto"`` is ``"packed"``).

Before anything is written, every floating-point tensor is checked finite
(:class:`NonFiniteCheckpoint`): a NaN/inf anywhere in the parameters,
buffers (BatchNorm running statistics) or optimiser state stops the run with
the previous checkpoint intact. Nothing is ever unpickled.

Content-verified: the header also holds ``content_sha256``, the SHA-256 of
the state's JSON text and of every tensor, and :func:`load_checkpoint`
recomputes it, so an edit of the state or of a tensor that still parses is a
one-line :class:`CheckpointError` naming the file, never a silently different
resume; a NaN/inf tensor or an over-deep state is refused on every load too
(:mod:`branchspec.checkpoint_content`). Checkpoints written before the
hash load as legacy files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from branchspec.errors import CheckpointError, ConfigError
from branchspec.io import atomic_write_bytes, atomic_write_text, regular_file
from branchspec.options import current_values
from branchspec.checkpoint_content import (
    HASH_KEY, STATE_KEY, content_sha256, non_finite_tensors, parse_state, verify_content,
)

FORMAT = "branchspec-checkpoint/2"


class ResumeMismatch(ConfigError, CheckpointError):
    """A resume under settings that would change the run (its config, thread count, world size, data): a
    one-line refusal, the :class:`ConfigError` of ``resume`` (``"resume: reason"``), exit 2 like any invalid
    argument."""

    def __init__(self, reason: str):
        super().__init__("resume", reason)


class NonFiniteCheckpoint(CheckpointError):
    """A tensor to be saved holds NaN/inf; nothing was written, the previous checkpoint is intact.
    A failed run, not bad input: exit 1."""

    exit_code = 1


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights, state)`` paths for a checkpoint given as NAME, NAME.json or NAME.safetensors."""
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def same_checkpoint(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether checkpoints ``a`` and ``b`` share a file of their unit (``NAME.safetensors`` / ``NAME.json``).

    Paths are compared resolved (``..``, symbolic links) and, where both files
    exist, by identity (``os.path.samefile``: hard links, bind mounts), so
    ``R/last``, ``R/./last.json`` and ``R/last.safetensors`` are one checkpoint.
    """
    pa, pb = checkpoint_paths(a), checkpoint_paths(b)
    if {p.resolve() for p in pa} & {p.resolve() for p in pb}:
        return True
    for x in pa:
        for y in pb:
            try:
                if x.exists() and y.exists() and os.path.samefile(x, y):
                    return True
            except OSError:
                pass
    return False


def checkpoint_exists(path: str | os.PathLike) -> bool:
    """Whether a checkpoint (its ``.safetensors`` unit, or an old-format JSON) is at ``path``: anything by
    its name, so that one which cannot be read (a folder in its place, no permission) is said so on
    loading rather than called missing."""
    wpath, spath = checkpoint_paths(path)
    return os.path.lexists(wpath) or os.path.lexists(spath)


def _openable(path: Path, what: str) -> None:
    """A one-line CheckpointError saying why ``path`` cannot be read — missing, a folder or other non-file in
    its place, no permission — if it cannot; nothing otherwise."""
    try:
        regular_file(path, 1 << 62)  # no size limit here; refuses a folder, a FIFO, a device, a link loop
        os.close(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))
    except ValueError as exc:
        raise CheckpointError(f"{what} {path} cannot be read: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"{what} {path} cannot be read: {(exc.strerror or type(exc).__name__).lower()}") from None


def kept_note(path: str | os.PathLike, what: str = "last good checkpoint kept") -> str:
    """The end of a stopped run's error line: ``"WHAT: PATH.json"``, or ``"no checkpoint written yet"``."""
    return f"{what}: {checkpoint_paths(path)[1]}" if checkpoint_exists(path) else "no checkpoint written yet"


def runtime_settings() -> dict[str, Any]:
    """Settings outside the run's config that change its trajectory: recorded in every checkpoint.

    Floating-point reductions are split differently with a different number of
    torch threads, so the same step gives different bits (a run resumed with
    ``--threads 2`` after ``--threads 1`` drifted to a max weight difference of
    1.66). The number of ``torchrun`` processes changes every BatchNorm
    statistic and the data each process sees.
    """
    import torch.distributed as dist

    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    return {"threads": torch.get_num_threads(), "world_size": world}


def check_runtime(state: dict[str, Any]) -> None:
    """Refuse, in one line naming the setting (``threads``, ``world_size``), to resume a checkpoint under other
    runtime settings: a :class:`ResumeMismatch` of ``resume``."""
    saved = state.get("runtime")
    saved = dict(saved) if isinstance(saved, dict) else {}  # {}: from before runtime settings were recorded
    if "world_size" not in saved and "world_size" in state:  # train-gan recorded it beside the runtime
        saved["world_size"] = state["world_size"]
    now = runtime_settings()
    for key, value in now.items():
        if key in saved and saved[key] != value:
            raise ResumeMismatch(f"the run was saved with `{key}` {saved[key]!r}, this process has "
                                 f"{value!r}; resume with `{key}` {saved[key]} to continue it exactly")


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
    """Write ``tensors`` and ``state`` as one atomic unit (plus a JSON copy); returns the JSON path.

    Raises :class:`NonFiniteCheckpoint` (writing nothing) if a tensor is not finite.

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
    bad = non_finite_tensors(flat)
    if bad:
        raise NonFiniteCheckpoint(f"non-finite values in {len(bad)} tensor(s) to save (first: {bad[0]}); "
                                  f"stopped without saving, {kept_note(path, 'previous checkpoint kept')}")
    doc = dict(state)
    doc.setdefault("runtime", runtime_settings())
    doc.pop("weights_file", None)
    text = json.dumps(doc, indent=2, sort_keys=True, default=_json_default)
    blob = _safetensors_bytes(flat, {STATE_KEY: text, "format": FORMAT, HASH_KEY: content_sha256(flat, text)})
    atomic_write_bytes(wpath, blob)
    atomic_write_text(spath, text)
    return spath


def _safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.torch import save

    # safetensors refuses tensors that share memory; clone those that do.
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return save(out, metadata=metadata)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _read_state_json(spath: Path) -> Any:
    _openable(spath, "checkpoint state")
    try:
        text = spath.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint state {spath} is unreadable: {exc}") from None
    return parse_state(text, spath)


def _header(wpath: Path, tensors: bool = False) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The metadata of a ``.safetensors`` unit (and its tensors when ``tensors``); a one-line error if unreadable."""
    _openable(wpath, "checkpoint weights")  # safetensors reports a file it may not open as "No such file"
    try:
        from safetensors import safe_open

        with safe_open(str(wpath), framework="pt", device="cpu") as fh:
            return (fh.metadata() or {}), ({k: fh.get_tensor(k) for k in fh.keys()} if tensors else {})
    except Exception as exc:  # safetensors raises its own error types
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint weights {wpath} are unreadable: {msg}") from None


def _state(meta: dict[str, str], wpath: Path, spath: Path, missing: str) -> dict[str, Any]:
    """The state in a safetensors header, else in the JSON beside it (previous format); ``missing`` if neither."""
    if STATE_KEY in meta:
        state, where = parse_state(meta[STATE_KEY], wpath), wpath
    elif os.path.lexists(spath):
        state, where = _read_state_json(spath), spath
    else:
        raise CheckpointError(missing)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {where}: state must be a JSON object, got {type(state).__name__}")
    return _current(state)


def _current(state: dict[str, Any]) -> dict[str, Any]:
    """The state with its recorded configs (``train_config``, the model's ``config``) in today's spelling:
    :func:`branchspec.options.current_values` (``engine: "auto"`` of an earlier version reads as ``"packed"``)."""
    out = dict(state)
    if isinstance(state.get("train_config"), dict):
        out["train_config"] = current_values(state["train_config"])
    model = state.get("model")
    if isinstance(model, dict) and isinstance(model.get("config"), dict):
        out["model"] = {**model, "config": current_values(model["config"])}
    return out


def checkpoint_state(path: str | os.PathLike) -> dict[str, Any]:
    """Only the state of a checkpoint (its header; no tensor is read)."""
    wpath, spath = checkpoint_paths(path)
    meta = _header(wpath)[0] if os.path.lexists(wpath) else {}
    return _state(meta, wpath, spath, f"checkpoint not found: {spath}")


def refresh_state_copy(path: str | os.PathLike) -> bool:
    """Rewrite ``NAME.json`` from the state in ``NAME.safetensors`` when they differ (a kill between the unit's
    rename and the copy's left it one save behind); returns whether it was rewritten. Called on ``--resume``,
    so a resumed run leaves the same files as one never interrupted."""
    wpath, spath = checkpoint_paths(path)
    if not wpath.is_file():
        return False
    text = _header(wpath)[0].get(STATE_KEY)
    if text is None:
        return False  # previous format: the JSON is the state
    try:
        if spath.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(spath, text)
    return True


def restore_runtime(path: str | os.PathLike) -> None:
    """Before ``--resume`` without ``--threads``: use the thread count the run was saved with."""
    if not checkpoint_exists(path):
        return
    saved = checkpoint_state(path).get("runtime")
    threads = saved.get("threads") if isinstance(saved, dict) else None
    if isinstance(threads, int) and not isinstance(threads, bool) and 1 <= threads <= 4096:
        torch.set_num_threads(threads)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`: ``(tensors, state)``.

    The state comes from the ``.safetensors`` unit itself (the JSON beside it
    is only read for checkpoints of the previous format).
    """
    wpath, spath = checkpoint_paths(path)
    if not os.path.lexists(wpath):
        if os.path.lexists(spath):
            raise CheckpointError(f"checkpoint weights missing: {wpath} (beside {spath.name})")
        raise CheckpointError(f"checkpoint not found: {spath}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError("device", f"not a device: {device!r} ({str(exc).splitlines()[0]})") from None
    meta, tensors = _header(wpath, tensors=True)
    state = _state(meta, wpath, spath, f"checkpoint {wpath} holds no state and {spath.name} is missing")
    verify_content(wpath, meta, tensors)
    state.pop("weights_file", None)
    if dev.type != "cpu":
        tensors = {k: v.to(dev) for k, v in tensors.items()}
    return tensors, state


def load_weights(module: torch.nn.Module, tensors: dict[str, torch.Tensor], path) -> None:
    """``module.load_state_dict(tensors)``; weights that do not fit are a one-line CheckpointError."""
    try:
        module.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not fit the model "
                              f"({str(exc).strip().splitlines()[0][:150]})") from None


def state_int(state: dict[str, Any], key: str, path) -> int:
    """``state[key]`` if it is an integer >= 0, else a one-line CheckpointError."""
    v = state.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise CheckpointError(f"checkpoint {path}: {key} must be an integer >= 0, got {v!r:.40}")
    return v


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
        try:
            torch.set_rng_state(tensors["rng.cpu"].to(torch.uint8))
        except (RuntimeError, TypeError) as exc:
            raise CheckpointError(f"checkpoint: RNG state rng.cpu is malformed ({str(exc).splitlines()[0][:200]})") from None
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
    """Inverse of :func:`optimizer_to_tensors`: load into ``opt`` (a malformed state is a CheckpointError)."""
    try:
        state: dict[int, dict[str, Any]] = {}
        for key, v in tensors.items():
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = v
        for pid, m in meta.get("state_meta", {}).items():
            state.setdefault(int(pid), {}).update(m)
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint: optimiser state is malformed ({first[:200]})") from None
