"""Seed derivation shared by every part of the package (bottom floor: imports only numpy).

One run seed feeds several independent random streams (the toy
initialisation of each M, the GAN's discriminator and its residual R, the
held-out crops of the demo, …). :func:`derive_seed` gives each stream its
own seed from the run seed and a few keys naming the stream, through
numpy's :class:`~numpy.random.SeedSequence` — so streams never collide the
way ``seed + 2`` and ``seed + 1000`` of two runs' seeds can (run 2's
``seed`` is run 0's ``seed + 2``). :func:`sequence_seed` is the older form,
kept for the three streams that shipped results were trained with.

Example:
    >>> derive_seed(0, "toy-init", 10) == derive_seed(0, "toy-init", 10)
    True
    >>> derive_seed(0, "gan", "discriminator") != derive_seed(2, "gan", "generator-residual")
    True
    >>> 0 <= derive_seed(123, "x") < 2**63
    True
"""

from __future__ import annotations

import zlib

import numpy as np


def _entropy(key: int | str) -> int:
    if isinstance(key, bool) or not isinstance(key, (int, np.integer, str)):
        raise TypeError(f"seed keys are ints or strings, got {key!r}")
    if isinstance(key, str):
        return zlib.crc32(key.encode("utf-8"))  # a fixed 32-bit number per name (not Python's salted hash)
    if not -(2**64) < key < 2**64:
        raise ValueError(f"seed keys are ints of at most 64 bits, got {key}")
    return int(key) if key >= 0 else 2**64 - int(key)  # a negative key (an index -1) gets its own range


def derive_seed(*keys: int | str) -> int:
    """A seed in [0, 2⁶³) for the stream named by ``keys`` (the run seed first, then names / indices)."""
    if not keys:
        raise TypeError("derive_seed needs at least one key")
    # the key count first: SeedSequence pads with zeros, so (s,) and (s, 0) would otherwise give one stream
    state = np.random.SeedSequence([len(keys)] + [_entropy(k) for k in keys]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])  # 63 bits: fits torch.manual_seed and np.random.default_rng


def sequence_seed(*keys: int) -> int:
    """The first 32-bit word of ``SeedSequence(keys)``: the derivation before :func:`derive_seed`.

    Kept, number for number, for the streams the shipped models were trained with — the GAN's
    per-step generator (seed, rank, step) and the classifier's alternating flips and their batch
    crops (``classifier_recipe``); changing it would change those runs. New streams use
    :func:`derive_seed`.

    Example:
        >>> sequence_seed(0, 7919)
        3288297969
    """
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])
