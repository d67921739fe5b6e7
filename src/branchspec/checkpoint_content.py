"""What every checkpoint load verifies: its content hash, finite tensors, a state of bounded depth.

:func:`content_sha256` is the SHA-256 of a checkpoint's state JSON text and of
every tensor (name, dtype, shape, raw bytes, in name order);
:func:`branchspec.checkpoint.save_checkpoint` records it in the
safetensors header (``content_sha256``) and :func:`verify_content` recomputes
it on load. An edit of the state or a tensor that still parses is then a
one-line :class:`CheckpointError` naming the file, never a silently different
``--resume``. Files written before the hash (the shipped checkpoints) are
legacy: not hash-checked, but their tensors must still be finite.
:func:`parse_state` refuses a state nested deeper than :data:`MAX_STATE_DEPTH`
in one line instead of a ``RecursionError``.

Example:
    >>> t = {"w": torch.ones(2)}
    >>> verify_content("c.safetensors", {STATE_KEY: "{}", HASH_KEY: content_sha256(t, "{}")}, t)
    >>> verify_content("c.safetensors", {STATE_KEY: "{}", HASH_KEY: content_sha256(t, "{}")}, {"w": torch.zeros(2)})
    Traceback (most recent call last):
    ...
    branchspec.errors.CheckpointError: checkpoint c.safetensors: its content does not match its content_sha256 (edited or corrupted after it was written); restore it from a copy or train again
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch

from branchspec.errors import CheckpointError

STATE_KEY = "branchspec_state"  # safetensors metadata entry holding the JSON state
HASH_KEY = "content_sha256"  # safetensors metadata entry: content_sha256(tensors, state text)
MAX_STATE_DEPTH = 64  # nesting of the state JSON: ours is < 10 deep; deeper is refused, never a RecursionError


def content_sha256(tensors: dict[str, torch.Tensor], state_text: str) -> str:
    """SHA-256 (hex) of ``state_text`` and of every tensor's name, dtype, shape and bytes, in name order.

    Example:
        >>> a = content_sha256({"w": torch.zeros(2)}, "{}")
        >>> a == content_sha256({"w": torch.zeros(2)}, "{}"), a == content_sha256({"w": torch.ones(2)}, "{}")
        (True, False)
    """
    h = hashlib.sha256()
    h.update(state_text.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode("utf-8"))
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # raw bytes, no copy (bf16 too)
    return h.hexdigest()


def parse_state(text: str, where: str | os.PathLike) -> Any:
    """``json.loads(text)``, nested at most :data:`MAX_STATE_DEPTH` deep; else a one-line CheckpointError."""
    try:
        state = json.loads(text)
    except RecursionError:
        raise CheckpointError(f"checkpoint {where}: its state is nested too deeply (over {MAX_STATE_DEPTH} levels)") from None
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {where}: its state is not valid JSON: {str(exc)[:150]}") from None
    todo, depth = [state] if isinstance(state, (dict, list)) else [], 0  # level by level: no recursion
    while todo:
        depth += 1
        if depth > MAX_STATE_DEPTH:
            raise CheckpointError(f"checkpoint {where}: its state is nested too deeply (over {MAX_STATE_DEPTH} levels)")
        todo = [c for v in todo for c in (v.values() if isinstance(v, dict) else v) if isinstance(c, (dict, list))]
    return state


def verify_content(wpath: str | os.PathLike, meta: dict[str, str], tensors: dict[str, torch.Tensor]) -> None:
    """The checks of every load: the recorded :func:`content_sha256` matches (files written without one are
    legacy: not checked), and every floating-point tensor is finite. One-line CheckpointError naming ``wpath``."""
    want = meta.get(HASH_KEY)
    if want is not None and (STATE_KEY not in meta or content_sha256(tensors, meta[STATE_KEY]) != want):
        raise CheckpointError(f"checkpoint {wpath}: its content does not match its {HASH_KEY} (edited or corrupted "
                              "after it was written); restore it from a copy or train again")
    bad = non_finite_tensors(tensors)
    if bad:
        raise CheckpointError(f"checkpoint {wpath}: {len(bad)} tensor(s) hold NaN/inf (first: {bad[0]}); refused")


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [k for k, v in tensors.items() if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all())]
