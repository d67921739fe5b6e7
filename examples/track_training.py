"""Tracking the specialisation of attention heads during training (the dynamics of paper Fig. 2).

Trains the 4-head row transformer of ``attention_heads.py`` on digits with a
:class:`branchspec.parts.Tracker` in the plain PyTorch loop: every 20 steps
it records the heads' norms, active / silent counts, mean |correlation| and
per-head gradient norms (from ``.grad``, free after ``backward()``), every
200 steps a 4-probe estimate of the Hessian block diagonality over the heads'
parameters. Writes ``tracker.jsonl``, ``tracker.csv`` and ``tracking.png``
to the folder given as argument (default ``runs/examples/tracking``) and
prints the first and last records. About 10 s on one CPU core.

    python examples/track_training.py [OUT]
"""

import sys
import time
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn

from branchspec import parts
from branchspec.figures.tracking import draw_tracking

sys.path.insert(0, str(Path(__file__).parent))
from attention_heads import RowTransformer  # noqa: E402


def main(out="runs/examples/tracking", steps=600):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = Path(out)
    for f in ("tracker.jsonl", "tracker.csv"):
        (out / f).unlink(missing_ok=True)
    d = load_digits()
    x, y = torch.tensor(d.images, dtype=torch.float32) / 16, torch.tensor(d.target)
    model = RowTransformer()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    ce = lambda o, t: nn.functional.cross_entropy(o, t, reduction="sum")  # noqa: E731
    held_out = [(x[1400:1600], y[1400:1600])]  # measure on fixed samples
    tracker = parts.Tracker(parts.heads(model.attn), out, every=20, eval_batches=held_out,
                            loss_fn=ce, probe_every=200, probes=4)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, 1400, (64,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        tracker.step(model, (x[idx], y[idx]))  # after backward: gradient norms from .grad
        opt.step()
    total = time.perf_counter() - t0
    tracker.close()
    png = draw_tracking(out, out / "tracking.png", title="heads of a row transformer on digits")
    for r in (tracker.records[0], tracker.records[-1]):
        print(f"step {r['step']:4d}: active {r['active']}, silent {r['silent']}, mean |corr| {r['mean_abs_corr']:.3f}, "
              f"norms {[round(v, 1) for v in r['norms']]}, grad norms {[round(v, 2) for v in r['grad_norms']]}")
    probes = [(r["step"], round(r["probe_block_diagonality"], 3), round(r["probe_seconds"], 2))
              for r in tracker.records if "probe_block_diagonality" in r]
    print(f"Hessian block diagonality (step, value, seconds): {probes}")
    print(f"{steps} steps in {total:.1f} s, of which measuring {tracker.seconds:.1f} s; wrote {png}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
