"""``branchspec report``: rebuild report.html from the saved sections of a folder."""

from __future__ import annotations

from branchspec import options
from branchspec.commands._common import existing_dir
from branchspec.errors import UsageError
from branchspec.report import collect_sections, write_report

NAME = "report"
HELP = "rebuild DIR/report.html from the results saved in DIR (no retraining)"


def add_arguments(p):  # no config: the folder to rebuild is the one option
    g = p.add_argument_group(options.NOT_CONFIG)
    g.add_argument("--out", required=True, help="a folder written by 'branchspec demo' (or holding */section.json)")


def run(args) -> int:
    out = existing_dir(args.out, "--out")
    warnings: list[str] = []
    try:
        sections = collect_sections(out, warnings)
    except OSError as exc:
        raise UsageError(f"--out: cannot read {out} ({(exc.strerror or str(exc)).lower()})") from None
    if not sections and not warnings:
        raise UsageError(f"--out: no */section.json under {out}; run 'branchspec demo --out {out}' first")
    path = write_report(out, sections, warnings=warnings)
    for w in warnings:
        print(f"report: warning: {w}")
    print(path)
    return 0
