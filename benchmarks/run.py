"""Run every benchmark and print one table.

Each ``benchmarks/bench_*.py`` defines ``rows(quick: bool) -> list[dict]``;
a row has ``name``, ``value``, ``unit`` and optionally ``note``. Usage:

    python benchmarks/run.py            # all, full size
    python benchmarks/run.py --quick    # tiny sizes, to check they run
    python benchmarks/run.py toy engine # only bench_toy.py and bench_engine.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {torch.get_num_threads()} torch threads, {gpu}, torch {torch.__version__}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("only", nargs="*", help="benchmark names (bench_NAME.py) to run; default all")
    ap.add_argument("--quick", action="store_true", help="tiny sizes")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args()
    files = sorted(HERE.glob("bench_*.py"))
    if args.only:
        files = [f for f in files if f.stem[len("bench_"):] in args.only]
    all_rows = []
    for f in files:
        spec = importlib.util.spec_from_file_location(f.stem, f)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        print(f"# {f.stem} …", file=sys.stderr, flush=True)
        for row in mod.rows(args.quick):
            row = {"bench": f.stem[len("bench_"):], **row}
            all_rows.append(row)
            print(f"  {row['name']}: {row['value']} {row['unit']}", file=sys.stderr, flush=True)
    print(f"Machine: {machine()}\n")
    print("| benchmark | measurement | value | unit | note |")
    print("|---|---|---|---|---|")
    for r in all_rows:
        v = r["value"]
        v = f"{v:.4g}" if isinstance(v, float) else v
        print(f"| {r['bench']} | {r['name']} | {v} | {r['unit']} | {r.get('note', '')} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "rows": all_rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
