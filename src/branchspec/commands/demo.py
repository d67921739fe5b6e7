"""``branchspec demo``: every experiment on embedded data, ending in report.html.

The steps are the small Configs of :mod:`branchspec.experiments.demo`, each
passed to its experiment's ``run`` and ``section`` (the functions the other
commands call).
"""

from __future__ import annotations

import time

from branchspec.commands._common import add_config_arguments, config_from_args, writable_dir
from branchspec.experiments.demo import Demo, plan
from branchspec.report import write_report

NAME = "demo"
HELP = "run every experiment on embedded data (CPU, < 10 min) and write DIR/report.html"
DESCRIPTION = (
    "Run the toy experiments, the Hessian analysis, a branched classifier, a branched "
    "class-transfer GAN and the decomposition applications on data embedded in the package "
    "and its dependencies (no network, no ../shared), then write one offline HTML report."
)


def add_arguments(p):
    add_config_arguments(p, Demo, out_default="demo-out")  # one flag per field of experiments.demo.Demo, and --out


def run(args) -> int:
    cfg, _ = config_from_args(args, Demo)
    out = writable_dir(args.out)
    sections = []
    for step in plan(out, quick=cfg.quick, parts=cfg.parts, shipped=cfg.shipped):
        t0 = time.perf_counter()
        print(f"[demo] {step.folder} …", flush=True)
        step.module.run(step.config, out / step.folder)
        if not step.section:
            continue
        section = step.module.section(out / step.folder)
        section.numbers.setdefault("wall time of this part (s)", round(time.perf_counter() - t0, 1))
        section.save(out)
        sections.append(section)
        write_report(out, sections)  # the page grows as parts finish
    path = write_report(out, sections)
    print(f"[demo] report: {path}")
    return 0
