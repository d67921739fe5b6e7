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
from branchspec.errors import BranchspecError, UsageError

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


def check_numbers(args: argparse.Namespace) -> None:
    """Checks every numeric argument of every command shares: floats finite, ints within 64 bits,
    seeds >= 0 (one UsageError line naming the argument); ranges specific to a command are its own."""
    for dest, value in vars(args).items():
        if dest.startswith("_") or isinstance(value, bool):
            continue
        arg = "--" + dest.replace("_", "-")
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{arg} must be a finite number, got {value}")
        if isinstance(value, int) and abs(value) > MAX_INT_ARG:
            raise UsageError(f"{arg}: {value} is out of range (at most {MAX_INT_ARG})")
        if dest == "seed" and isinstance(value, int) and value < 0:
            raise UsageError(f"--seed must be >= 0, got {value}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        check_numbers(args)
        return int(args._run(args) or 0)
    except BranchspecError as exc:  # one line; exit 2 for bad input, 1 for a failed run (errors.py)
        print(f"{args._prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        print(f"{args._prog}: error: no space left on the device{where}; free some space and run again", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{args._prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
