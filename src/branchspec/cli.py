"""The ``branchspec`` command line: the only module that reads argv.

Every sub-command lives in :mod:`branchspec.commands`; bad input ends with
a one-line ``branchspec CMD: error: ...`` message and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import math
import sys

from branchspec import __version__
from branchspec.budget import check_threads
from branchspec.errors import BranchspecError, ConfigError, UsageError
from branchspec.heap import keep_freed_memory

# Sub-command modules, in the order --help lists them.
COMMANDS = [
    "demo",
    "toy",
    "hessian",
    "train_classifier",
    "analyze_classifier",
    "train_gan",
    "decompose",
    "manipulate",
    "segment",
    "report",
    "export",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as argparse does
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="branchspec",
        description="Branch specialisation in branched networks (Brokman & Gilboa): "
        "train branched models, measure specialisation, decompose images.",
    )
    parser.add_argument("--version", action="version", version=f"branchspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for modname in COMMANDS:
        mod = importlib.import_module(f"branchspec.commands.{modname}")
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _prog=p.prog)
    return parser


MAX_INT_ARG = 2**63 - 1  # every integer argument fits a signed 64-bit int (seeds, sizes, counts)
MAX_FLOAT_ARG = 3.4e38  # every float argument fits a float32 (torch takes lr, weight decay, σ … as float32 scalars)


def check_numbers(args: argparse.Namespace) -> None:
    """Checks every argument of every command shares (one UsageError line naming the argument): floats finite
    and within float32, ints within 64 bits, seeds >= 0, ``--threads`` within this machine's CPUs
    (:func:`branchspec.budget.check_threads`), ``--out`` not empty; ranges specific to a command are its own."""
    for dest, value in vars(args).items():
        if dest.startswith("_") or isinstance(value, bool):
            continue
        arg = "--" + dest.replace("_", "-")
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{arg} must be a finite number, got {value}")
        if isinstance(value, float) and abs(value) > MAX_FLOAT_ARG:
            raise UsageError(f"{arg}: {value:g} is out of range (at most {MAX_FLOAT_ARG:g} in magnitude)")
        if isinstance(value, int) and abs(value) > MAX_INT_ARG:
            raise UsageError(f"{arg}: {value} is out of range (at most {MAX_INT_ARG})")
        if dest == "seed" and isinstance(value, int) and value < 0:
            raise UsageError(f"--seed must be >= 0, got {value}")
        if dest == "threads" and value is not None:
            try:
                check_threads(value)
            except ConfigError as exc:
                raise UsageError(f"{arg}: {exc.reason}") from None
        if dest == "out" and isinstance(value, str) and not value.strip():
            raise UsageError("--out: empty path")


def _printable_streams() -> None:
    """stdout / stderr that print any path: a non-UTF-8 file name (held as surrogates) is written
    backslash-escaped, where a strict UTF-8 stream would raise UnicodeEncodeError at the final print."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # not a text stream (pytest's capture): leave it
            pass


def os_error_line(exc: OSError) -> str:
    """One line for an OSError that reached the top: what failed, on which path (a write under --out,
    a read of an input), and what to do about a full disk."""
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        where = f" writing {exc.filename}" if exc.filename else ""
        return f"no space left on the device{where}; free some space and run again"
    why = exc.strerror or type(exc).__name__
    if exc.filename is None:
        return f"{why} (errno {exc.errno})" if exc.errno else str(exc) or why
    target = f" -> {exc.filename2}" if exc.filename2 else ""
    return f"{exc.filename}{target}: {why}"


def main(argv: list[str] | None = None) -> int:
    _printable_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    keep_freed_memory()  # large freed blocks stay for the next step (heap.py), unless the environment chooses
    try:
        check_numbers(args)
        return int(args._run(args) or 0)
    except BranchspecError as exc:  # one line; exit 2 for bad input, 1 for a failed run (errors.py)
        print(f"{args._prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a write or read the code below did not name itself (io.WriteError does)
        print(f"{args._prog}: error: {os_error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{args._prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
