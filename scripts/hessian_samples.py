"""First-layer Hessian block diagonality vs the number of test images it is taken on (§5, Fig. 5 right).

The Hessian of a summed loss is the sum of per-image Hessians. Its inter-branch
blocks are distributive × collaborative factors (eq. 14) whose signs vary from
image to image once branches specialise, so they cancel as images are added,
while the diagonal blocks add up; at initialisation they do not cancel. A
32-image Hessian (analyze-classifier's old default) is therefore a noisy
measure of the §5 prediction. This script measures it for a trained classifier
checkpoint against the initialisation its model spec rebuilds (seed), on
disjoint sets of test images and on growing prefixes, with the exact blockwise
method (eq. 13–14) and the paper's clamped loss.

Usage:
    python scripts/hessian_samples.py DATA OUT.json NAME=CKPT [NAME=CKPT ...]
    e.g. python scripts/hessian_samples.py ../shared/data/cifar-10-batches-py hess.json \
             shipped=checkpoints/cifar10-m16/last
The first checkpoint's model spec gives the initialisation ("init" row).
"""

from __future__ import annotations

import json
import sys

import torch

from branchspec.classifier.analysis_run import first_layer_hessian
from branchspec.data.imageset import test_set_for
from branchspec.loading import load_model
from branchspec.models.registry import build_model

SETS = [(a, 32) for a in (0, 250, 500, 750)] + [(0, 128), (500, 128), (0, 256), (0, 512)]  # (first image, count)


def block_diagonality(model, x, y) -> dict:
    s = first_layer_hessian(model, x, y, clamp=True)[0]["summary"]
    return {"block_diagonality": round(s["block_diagonality"], 3), "scale_free": round(s["scale_free_block_diagonality"], 3)}


def main(argv: list[str]) -> int:
    if len(argv) < 3 or any("=" not in a for a in argv[2:]):
        print(__doc__.split("Usage:")[1].strip(), file=sys.stderr)
        return 2
    data, out = argv[0], argv[1]
    models, state = {}, None
    for arg in argv[2:]:
        name, path = arg.split("=", 1)
        models[name], st = load_model(path)
        state = state or st
    models = {"init": build_model(state["model"]["kind"], state["model"]["config"]), **models}
    test = test_set_for(state, data)
    res = {}
    for a, n in SETS:
        x, y = test.make_batch(torch.arange(a, a + n), augment=False, gen=None)  # normalised with the test set's statistics
        res[f"test images {a}-{a + n - 1}"] = row = {k: block_diagonality(m, x, y) for k, m in models.items()}
        print(f"images {a}-{a + n - 1}: " + ", ".join(f"{k} {v['block_diagonality']:.3f} ({v['scale_free']:.3f})"
                                                      for k, v in row.items()), flush=True)
    with open(out, "w") as fh:
        json.dump({"seed": state["model"]["config"].get("seed"), "results": res}, fh, indent=1)
    return 0


if __name__ == "__main__":
    torch.set_num_threads(2)
    sys.exit(main(sys.argv[1:]))
