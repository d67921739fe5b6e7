"""Argument checks shared by the sub-commands (each failure is one UsageError line), and the one place where
the library's field names become flags (:func:`flag_errors`)."""

from __future__ import annotations

import math
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

from branchspec import options, textlists
from branchspec.errors import BranchspecError, ConfigError, UsageError
from branchspec.io import probe_writable
from branchspec.precision import emulated_bf16

MAX_BRANCHES = 4096  # M: the paper uses up to 32; larger is refused before anything is built
MAX_IMG_SIZE = 1024  # image side: the paper's largest is 256


def writable_dir(path: str | os.PathLike, arg: str = "--out") -> Path:
    """Create ``path`` if needed and prove it is writable, else a UsageError naming ``arg``."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{arg}: {p} exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe_writable(p)  # real bytes, fsync'ed: an empty file would pass on a full disk
    except OSError as exc:
        raise UsageError(f"{arg}: cannot write to {p} ({exc.strerror or exc})") from None
    return p


def warn_emulated_bf16(prog: str, precision: str, device: str) -> None:
    """``PROG: warning: ...`` on stderr when a run is about to use bf16 that this CPU only emulates."""
    line = emulated_bf16(precision, device)
    if line:
        print(f"{prog}: warning: {line}", file=sys.stderr)


def device_arg(device: str, arg: str = "--device") -> str:
    """``device`` if torch knows it and it is available, else a UsageError naming ``arg``."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"{arg}: not a torch device: {device!r} (e.g. cpu, cuda, cuda:0)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{arg} {device}: no CUDA device available")
    return device


def existing_dir(path: str | os.PathLike, arg: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"{arg}: no such folder: {p}")
    return p


def existing_file(path: str | os.PathLike, arg: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{arg}: no such file: {p}")
    return p


def at_least(value: int | float, minimum: int | float, arg: str):
    if value < minimum:
        raise UsageError(f"{arg} must be >= {minimum}, got {value}")
    return value


def at_most(value: int | float, maximum: int | float, arg: str, why: str = ""):
    if value > maximum:
        raise UsageError(f"{arg} must be <= {maximum}{' (' + why + ')' if why else ''}, got {value}")
    return value


def finite(value: float, arg: str, lo: float | None = None, hi: float | None = None, open_lo: bool = False) -> float:
    """``value`` if finite and within [lo, hi] (``(lo, hi]`` with ``open_lo``), else a UsageError naming ``arg``."""
    if not math.isfinite(value):
        raise UsageError(f"{arg} must be a finite number, got {value}")
    if lo is not None and (value <= lo if open_lo else value < lo):
        raise UsageError(f"{arg} must be {'>' if open_lo else '>='} {lo}, got {value}")
    if hi is not None and value > hi:
        raise UsageError(f"{arg} must be <= {hi}, got {value}")
    return value


def int_range(text: str, arg: str, max_value: int = MAX_BRANCHES, max_count: int = 10_000) -> list[int]:
    """:func:`branchspec.textlists.int_range` (``"2-30"``, ``"2,4,8"``), a refusal a UsageError naming ``arg``."""
    try:
        return textlists.int_range(text, max_value, max_count)
    except ValueError as exc:
        raise UsageError(f"{arg}: {exc}") from None


_SETTING = re.compile(r"`([a-z_][a-z0-9_]*)`")  # a setting named in a library message: `resume`


def flag_of(field: str, flags: dict[str, str]) -> str:
    """The command-line flag of ``field``: its entry in ``flags``, else ``--field-name`` (the run-control
    parameters a command passes through: ``resume`` → ``--resume``, ``sweep_procs`` → ``--sweep-procs``)."""
    return flags.get(field) or "--" + field.replace("_", "-")


def as_flags(text: str, flags: dict[str, str]) -> str:
    """``text`` with every setting named in backticks (``"pass `resume`"``) written as its flag."""
    return _SETTING.sub(lambda m: flag_of(m.group(1), flags), text)


@contextmanager
def flag_errors(flags: dict[str, str]):
    """Rename the library's field names to command-line flags in a one-line error.

    ``flags`` maps Config fields and library parameters to flags (``{"compare_checkpoint":
    "--compare-checkpoint", "procs": "--sweep-procs"}``); a field it does not list is ``--field-name``
    (:func:`flag_of`). A :class:`ConfigError` becomes a :class:`UsageError` (exit 2) or, when not a usage
    problem, a :class:`BranchspecError` (exit 1) naming the field's flag; any other error whose message
    starts with ``"field: "`` for a field in ``flags`` keeps its class and gets the flag instead. In either,
    every setting the message names in backticks (:class:`ConfigError`) becomes its flag too.
    """
    try:
        yield
    except ConfigError as exc:
        cls = UsageError if exc.usage else BranchspecError
        raise cls(f"{flag_of(exc.field, flags)}: {as_flags(exc.reason, flags)}") from None
    except BranchspecError as exc:
        text = str(exc)
        field, sep, rest = text.partition(": ")
        if sep and field in flags:
            text = f"{flags[field]}: {rest}"
        shown = as_flags(text, flags)
        if shown == str(exc):
            raise
        raise type(exc)(shown) from None


DECOMPOSITION_ARG = "DECOMPOSITION.npz|FOLDER"  # the positional input of segment and manipulate


def add_config_arguments(p, config_cls, out_default: str | None = None):
    """One flag per field of ``config_cls`` (:func:`branchspec.options.add_options`) and ``--out`` in the
    run-control group (required unless ``out_default``); returns that group for more run-control flags."""
    options.add_options(p, config_cls, config_file=True)
    g = p.add_argument_group(options.NOT_CONFIG)
    if out_default is None:
        g.add_argument("--out", required=True, metavar="DIR", help="output folder")
    else:
        g.add_argument("--out", default=out_default, metavar="DIR", help=f"output folder (default: {out_default})")
    return g


def config_from_args(args, config_cls, **fixed):
    """``config_cls`` built from the parsed flags (and ``fixed`` fields), and the field → flag map; a bad value
    is a one-line error naming its flag."""
    flags = options.flags(config_cls)
    with flag_errors(flags):
        return config_cls(**options.values(args, config_cls), **fixed), flags


def add_decomposition_arguments(p, config_cls) -> None:
    """``segment`` / ``manipulate``: the input (one decomposition or a folder of them), one flag per field of
    ``config_cls`` (``experiments.apps.Segment`` / ``Manipulate``) and ``--out``."""
    p.add_argument("decomposition", metavar=DECOMPOSITION_ARG,
                   help="a decomposition written by 'branchspec decompose', or its output folder (every .npz in it)")
    add_config_arguments(p, config_cls)


def run_on_decomposition(args, config_cls, run_file, run_folder) -> int:
    """Build ``config_cls`` from the flags and run ``run_folder(args, cfg)`` for a folder input, else
    ``run_file(args, cfg)``; a library error names the flag (or the input) it concerns."""
    flags = {**options.flags(config_cls), "decomposition": "DECOMPOSITION.npz", "folder": DECOMPOSITION_ARG}
    with flag_errors(flags):
        cfg = config_cls(**options.values(args, config_cls), folder="")
        return (run_folder if Path(args.decomposition).is_dir() else run_file)(args, cfg)
