"""Train the runs of an M sweep (§6, App. C, Fig. 17) on one or several processes.

:func:`train_runs` takes one :class:`~branchspec.classifier.train.TrainConfig`
per M and trains the ones not finished yet — in this process (``procs=1``), or
each in a ``spawn`` process of its own, at most ``procs`` at once, largest M
first so the longest runs start at once; a run that fails (or whose process
is killed) is named in one line after the others have finished. Each worker uses
``threads`` torch threads; on CUDA worker ``i`` sees only GPU ``i mod
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
from multiprocessing import get_context
from pathlib import Path

import torch

from branchspec import budget
from branchspec.errors import ConfigError
from branchspec.checkpoint import checkpoint_exists, checkpoint_state
from branchspec.classifier.train import TrainConfig, train
from branchspec.classifier.runfiles import check_resume
from branchspec.classifier.recipe import loss_reached
from branchspec.losses import soft_target_floor
from branchspec.train.memory import classifier_training_bytes
from branchspec.heap import keep_freed_memory


def pending(cfg: TrainConfig, resume: bool) -> bool:
    """Whether ``cfg``'s run still needs training; an unfinished run needs ``resume``.

    A finished run (its checkpoint at ``cfg.epochs``, or at an epoch whose
    train loss met ``cfg.stop_loss``) is reused as it is; its saved config must
    match ``cfg`` (same rules as a resumed run).
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
        raise ConfigError("out", f"{cfg.out} holds an unfinished run; pass `resume` to continue it")
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


def _run_in_worker(cfg: TrainConfig, gpu: int | None, threads: int | None, parent: int, conn) -> None:
    """One run in its own ``spawn`` process: take a GPU (``CUDA_VISIBLE_DEVICES``, before CUDA starts), pin
    threads, watch the parent (:func:`_exit_with_parent`), train (resuming a started run), and send back
    ``None`` or the one-line error."""
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    keep_freed_memory()  # a spawned process: the parent's malloc settings do not carry over
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if threads:
        torch.set_num_threads(threads)
    try:
        train(cfg, resume=checkpoint_exists(Path(cfg.out) / "last"), progress=False, log=lambda s: None)
        conn.send(None)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as one line (and whether it is bad input)
        conn.send((str(exc).splitlines()[0] if str(exc) else type(exc).__name__, getattr(exc, "exit_code", 1) == 2))
    finally:
        conn.close()


_NO_REPORT = object()


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        import signal

        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"ended with exit status {code}"


def train_runs(cfgs: list[TrainConfig], resume: bool = False, procs: int = 1, threads: int | None = None,
               progress: bool = True, log=print) -> None:
    """Train every pending run of ``cfgs``; ``procs`` > 1 places them on that many worker processes.

    With workers, each run has a process of its own (at most ``procs`` at once, largest M first). A run
    that fails — an error, or its process killed — does not stop the others: they finish, and then one
    :class:`~branchspec.errors.ConfigError` of ``procs`` names every failed M (its checkpoints are kept: ``resume``
    continues it; bad input in every failed run is a usage error, else a failed run).
    """
    if procs < 1:
        raise ConfigError("procs", f"must be >= 1, got {procs}")
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
        raise ConfigError("device", "cuda, but no CUDA device is available")
    workers = min(procs, len(todo))
    at_once = sum(classifier_training_bytes(c) for c in todo[:workers])  # the largest M run together
    budget.check(at_once, f"`procs` {workers} (M={', '.join(str(c.num_branches) for c in todo[:workers])} "
                          "trained at once)")
    log(f"sweep: M={[c.num_branches for c in todo]} on {workers} processes")
    failed = _schedule(todo, workers, n_gpu, threads, log)
    if failed:
        what = "; ".join(f"M={m}: {why}" for m, why, _ in failed)
        raise ConfigError("procs", f"{len(failed)} of {len(todo)} run(s) failed ({what}); the others finished; "
                                   "run again with `resume` to continue the failed ones",
                          usage=all(usage for *_, usage in failed))


def _schedule(todo: list[TrainConfig], workers: int, n_gpu: int, threads: int | None, log) -> list[tuple]:
    """Run ``todo`` on at most ``workers`` processes at once (slot i: GPU i mod n_gpu); the failed runs as
    (M, why, whether it is bad input)."""
    from multiprocessing.connection import wait

    ctx = get_context("spawn")
    queue, free = list(todo), list(range(workers))
    running: dict = {}  # sentinel -> (process, slot, cfg, receiving end)
    failed: list[tuple] = []
    try:
        while queue or running:
            while queue and free:
                cfg, slot = queue.pop(0), free.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_run_in_worker, name=f"sweep-M{cfg.num_branches}",
                                args=(cfg, slot % n_gpu if n_gpu else None, threads, os.getpid(), send))
                p.start()
                send.close()
                running[p.sentinel] = (p, slot, cfg, recv)
            for sentinel in wait(list(running)):
                p, slot, cfg, recv = running.pop(sentinel)
                p.join()
                try:
                    msg = recv.recv() if recv.poll() else _NO_REPORT
                except (EOFError, OSError):  # the process died before it could report
                    msg = _NO_REPORT
                recv.close()
                free.append(slot)
                if msg is None and p.exitcode == 0:
                    log(f"sweep: finished {cfg.out}")
                else:
                    why, usage = msg if isinstance(msg, tuple) else (f"its process {_ended(p.exitcode)}", False)
                    failed.append((cfg.num_branches, why, usage))
                    log(f"sweep: M={cfg.num_branches} failed: {why}")
    finally:
        for p, *_ in running.values():  # interrupted: stop the runs still going (they resume from checkpoints)
            p.terminate()
            p.join()
    return failed
