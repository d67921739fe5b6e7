"""``branchspec demo``: every experiment on embedded data, ending in report.html.

The steps are the small Configs of :mod:`branchspec.experiments.demo`, each
passed to its experiment's ``run`` and ``section`` (the functions the other
commands call).
"""

from __future__ import annotations

import time
from pathlib import Path

from branchspec.commands._common import writable_dir
from branchspec.experiments.classifier import SHIPPED_FILE
from branchspec.experiments.demo import PARTS, plan
from branchspec.report import write_report

NAME = "demo"
HELP = "run every experiment on embedded data (CPU, < 10 min) and write DIR/report.html"
DESCRIPTION = (
    "Run the toy experiments, the Hessian analysis, a branched classifier, a branched "
    "class-transfer GAN and the decomposition applications on data embedded in the package "
    "and its dependencies (no network, no ../shared), then write one offline HTML report."
)


def add_arguments(p):
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in well under a minute")
    p.add_argument("--shipped", default=None,
                   help="folder of a shipped CIFAR-10 model (with shipped.json) whose figures the classifier "
                        "section shows (default: checkpoints/cifar10-m16 of the source checkout, if the package "
                        "runs from one; 'none': no shipped model)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")


def run(args) -> int:
    from branchspec.errors import UsageError

    out = writable_dir(args.out)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        raise UsageError(f"--parts: unknown part(s) {bad or args.parts!r}; choose from {','.join(PARTS)}")
    shipped = args.shipped
    if shipped is not None:
        shipped = "" if shipped == "none" else str(Path(shipped))
        if shipped and not (Path(shipped) / SHIPPED_FILE).is_file():
            raise UsageError(f"--shipped: no {SHIPPED_FILE} in {shipped}")
    sections = []
    for step in plan(out, quick=args.quick, parts=parts, shipped=shipped):
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
