"""Train the runs of an M sweep (§6, App. C, Fig. 17) on one or several processes.

:func:`train_runs` takes one :class:`~branchspec.train.classifier.TrainConfig`
per M and trains the ones not finished yet — in this process (``procs=1``), or
spread over ``procs`` worker processes (``spawn``), largest M first so the
longest runs start at once. Each worker trains its runs one after the other
with ``threads`` torch threads; on CUDA worker ``i`` sees only GPU ``i mod
n_gpus`` (``CUDA_VISIBLE_DEVICES``), so a user with a GPU node runs the whole
sweep at once. A run is the same whichever process trains it: every run seeds
itself from its own config, so the results do not depend on ``procs``
(tested).

Example:
    >>> cfgs = [replace(base, num_branches=m, out=f"sweep/M{m}") for m in (2, 4)]  # doctest: +SKIP
    >>> train_runs(cfgs, procs=2, threads=1)                                            # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

from branchspec.errors import UsageError
from branchspec.train.checkpoint import checkpoint_exists, checkpoint_state
from branchspec.train.classifier import TrainConfig, train
from branchspec.train.classifier_io import check_resume
from branchspec.train.classifier_recipe import loss_reached
from branchspec.train.losses import soft_target_floor


def pending(cfg: TrainConfig, resume: bool) -> bool:
    """Whether ``cfg``'s run still needs training; an unfinished run needs ``resume``.

    A finished run (its checkpoint at ``cfg.epochs``, or at an epoch whose
    train loss met ``cfg.stop_loss``) is reused as it is; its saved config must
    match ``cfg`` (same rules as ``--resume``).
    """
    ckpt = Path(cfg.out) / "last"
    if not checkpoint_exists(ckpt):
        return True
    st = checkpoint_state(ckpt)
    check_resume(st.get("train_config"), cfg)
    floor = soft_target_floor(len(st.get("data", {}).get("class_names") or range(10))) if cfg.clamp else 0.0
    if st.get("epoch", 0) >= cfg.epochs or loss_reached(cfg.stop_loss, floor, st.get("metrics") or {}):
        return False
    if not resume:
        raise UsageError(f"--out: {cfg.out} holds an unfinished run; pass --resume to continue it")
    return True


PARENT_POLL_S = 2.0


def _exit_with_parent(parent: int) -> None:
    """Exit this worker once ``parent`` is gone (re-parented: ``os.getppid()`` changed).

    A ``spawn`` worker outlives a parent killed by a signal (only Ctrl-C reaches the whole process group),
    and would train on into the run folder a restarted sweep is writing too. Checkpoints are written
    atomically, so leaving between two steps loses at most the steps since the last one.
    """
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _init_worker(slots, threads: int | None, parent: int) -> None:
    """Worker start-up: take a GPU slot (``CUDA_VISIBLE_DEVICES``, before CUDA starts), pin threads, and watch
    the parent process (:func:`_exit_with_parent`)."""
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    gpu = slots.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if threads:
        torch.set_num_threads(threads)


def _worker(cfg: TrainConfig) -> str:
    """One run in a worker process (resuming a started one)."""
    train(cfg, resume=checkpoint_exists(Path(cfg.out) / "last"), progress=False, log=lambda s: None)
    return cfg.out


def train_runs(cfgs: list[TrainConfig], resume: bool = False, procs: int = 1, threads: int | None = None,
               progress: bool = True, log=print) -> None:
    """Train every pending run of ``cfgs``; ``procs`` > 1 places them on that many worker processes."""
    if procs < 1:
        raise UsageError(f"--sweep-procs must be >= 1, got {procs}")
    todo = [c for c in cfgs if pending(c, resume)]
    if procs == 1 or len(todo) <= 1:
        for c in todo:
            log(f"sweep: training M={c.num_branches}")
            if threads:
                torch.set_num_threads(threads)
            train(c, resume=checkpoint_exists(Path(c.out) / "last"), progress=progress, log=log)
        return
    todo.sort(key=lambda c: -c.num_branches)  # longest first
    cuda = any(c.device == "cuda" or (c.device == "auto" and torch.cuda.is_available()) for c in todo)
    n_gpu = torch.cuda.device_count() if cuda else 0
    if cuda and n_gpu == 0:
        raise UsageError("--device cuda: no CUDA device available")
    ctx = get_context("spawn")
    workers = min(procs, len(todo))
    slots = ctx.Queue()  # handed to each worker at its start (no Manager process, which a killed parent orphans)
    for i in range(workers):
        slots.put(i % n_gpu if n_gpu else None)  # worker i sees GPU i mod n_gpu only
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(slots, threads, os.getpid())) as pool:
        futures = [pool.submit(_worker, c) for c in todo]
        log(f"sweep: M={[c.num_branches for c in todo]} on {workers} processes")
        for f in futures:
            log(f"sweep: finished {f.result()}")
