"""The ``branchspec`` command line: the only module that reads argv.

Every sub-command lives in :mod:`branchspec.commands`; bad input ends with
a one-line ``branchspec CMD: error: ...`` message and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UsageError as exc:
        print(f"{args._prog}: error: {exc}", file=sys.stderr)
        return 2
    except BranchspecError as exc:
        print(f"{args._prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{args._prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
