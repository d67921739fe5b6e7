"""Compare every number in the JSON files of two output folders (a demo, a decomposition, an analysis).

Prints the files only one folder has, keys only one file has, how many numbers are identical, within 1e-4
relative, or further apart, and the largest differences by part (the first folder level). Wall times and
rates are skipped (keys containing "time", "seconds", "per_s", …). Used to check that a change of code leaves
results unchanged (docs/notebook/2026-12-05-restructure-check.md).

Usage:
    python scripts/compare_outputs.py BEFORE_DIR AFTER_DIR [--show 25]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

SKIP = ("time", "seconds", "_s", "elapsed", "wall", "per_s", "rate", "img_per", "images_per", "steps_per")


def leaves(x, path=""):
    """(path, number) for every int / float leaf of a JSON value."""
    if isinstance(x, dict):
        for k, v in x.items():
            yield from leaves(v, f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from leaves(v, f"{path}[{i}]")
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield path, float(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--show", type=int, default=25, help="largest differences shown")
    args = ap.parse_args()
    fa = {f.relative_to(args.before) for f in args.before.rglob("*.json")}
    fb = {f.relative_to(args.after) for f in args.after.rglob("*.json")}
    print("only in the first:", sorted(map(str, fa - fb)))
    print("only in the second:", sorted(map(str, fb - fa)))
    total = same = close = 0
    apart = []
    for f in sorted(fa & fb):
        try:
            da = dict(leaves(json.loads((args.before / f).read_text())))
            db = dict(leaves(json.loads((args.after / f).read_text())))
        except (OSError, ValueError) as exc:
            print(f"unreadable: {f} ({exc})")
            continue
        if da.keys() ^ db.keys():
            print(f"{f}: {len(da.keys() ^ db.keys())} keys in one file only, e.g. {sorted(da.keys() ^ db.keys())[:3]}")
        for k in da.keys() & db.keys():
            if any(s in k.lower() for s in SKIP):
                continue
            total += 1
            x, y = da[k], db[k]
            rel = abs(x - y) / max(abs(x), abs(y), 1e-12)
            same += x == y
            close += 0 < rel < 1e-4
            if rel >= 1e-4:
                apart.append((rel, str(f), k, x, y))
    apart.sort(reverse=True)
    print(f"{total} numbers: {same} identical, {close} within 1e-4 relative, {len(apart)} further apart")
    print("further apart, by part:", dict(Counter(a[1].split("/")[0] for a in apart)))
    for a in apart[:args.show]:
        print(f"  {a[0]:.3g}  {a[1]}  {a[2]}: {a[3]!r} → {a[4]!r}")


if __name__ == "__main__":
    main()
