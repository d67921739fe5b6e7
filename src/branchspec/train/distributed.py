"""Data-parallel training under ``torchrun``: one :class:`DistContext` for the §6 classifier and the §7 GAN.

With ``WORLD_SIZE > 1`` in the environment (``torchrun --nproc_per_node N``)
a trainer joins a process group — gloo on CPU, nccl on CUDA — and wraps its
modules in :class:`torch.nn.parallel.DistributedDataParallel`; rank 0 writes
every file.

* The classifier: every process builds the same global batch (batch i of
  epoch e is a pure function of (seed, e, i)) and trains on its slice
  ``x[rank::world]`` (:meth:`DistContext.shard`); DDP averages the gradients,
  so ``--batch-size`` is the global batch and ``--resume`` stays a function of
  the saved step. BatchNorm statistics are per process (no SyncBatchNorm); DDP
  broadcasts rank 0's buffers before every forward. Rank 0 evaluates.
* The GAN (:mod:`branchspec.gan.train`): G and D are wrapped, batches come
  from a ``DistributedSampler`` and ``--batch-size`` is per process; the
  logged losses are averaged over processes (:meth:`DistContext.sum`).

Example:
    >>> ctx = DistContext.setup("cpu")   # a plain process: world 1, rank 0
    >>> ctx.world, ctx.main
    (1, True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from branchspec.errors import ConfigError

DEVICES = ("cpu", "cuda", "auto")


@dataclass
class DistContext:
    """Where this process trains: world size, rank, device; ``main`` = rank 0."""

    world: int
    rank: int
    device: torch.device
    own_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def setup(device: str = "cpu") -> "DistContext":
        """Join the torchrun process group if there is one; choose the device."""
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        if use_cuda and not torch.cuda.is_available():
            raise ConfigError("device", f"{device}, but no CUDA device is available")
        own = False
        if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            dist.init_process_group("nccl" if use_cuda else "gloo")
            own = True
        world = dist.get_world_size() if dist.is_initialized() else 1
        rank = dist.get_rank() if dist.is_initialized() else 0
        dev = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}" if use_cuda else "cpu")
        if use_cuda:
            torch.cuda.set_device(dev)
        return DistContext(world, rank, dev, own)

    def wrap(self, model):
        """The module to call in training steps: DDP around ``model`` when world > 1."""
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def shard(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """This process's slice of the global batch, on its device."""
        if self.world > 1:
            if len(y) < self.world:
                raise ConfigError("batch_size", f"a batch of {len(y)} cannot be shared by {self.world} processes")
            x, y = x[self.rank::self.world], y[self.rank::self.world]
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def sum(self, values: torch.Tensor) -> list[float]:
        """Σ over processes of a float64 tensor of values (identity for one process), read with one host sync."""
        if self.world > 1:
            values = values.clone()
            dist.all_reduce(values)
        return values.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.own_group and dist.is_initialized():
            dist.destroy_process_group()
