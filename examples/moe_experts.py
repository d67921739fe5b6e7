"""Experts of a mixture-of-experts classifier on scikit-learn digits: who specialises on which class.

A gated mixture of 6 small MLP experts (softmax gate) is trained on the 64
digit pixels; branchspec.parts then reads the experts' contributions
g_e(x)·E_e(x) through a forward hook (eq. 1 with learnt gains), reports
their activity and correlation (§4.1), each expert's mean confidence per
class (the branch confidence of §6, Fig. 7) and the accuracy without each
expert. Runs in a few seconds on one CPU core.
"""

import torch
from torch import nn

from branchspec import metrics, parts

from _digits import accuracy, digits, fit  # examples/_digits.py: the task the examples share


class MoE(nn.Module):
    def __init__(self, d_in=64, d_out=10, n=6, hidden=32):
        super().__init__()
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out)) for _ in range(n))
        self.gate = nn.Linear(d_in, n)

    def forward(self, x):  # (B, 64) -> (B, 10)
        g = self.gate(x).softmax(-1)  # (B, E)
        return sum(g[:, e, None] * ex(x) for e, ex in enumerate(self.experts))


def main(steps=600):
    x, y, tr, te = digits("flat")
    model = fit(MoE(), x, y, tr, steps)

    def acc():
        return accuracy(model, x[te], y[te])

    spec = parts.experts(model, experts="experts", gate="gate")  # softmax of the gate's output by default
    c = parts.contributions(model, spec, x[te])  # (E, N, 10)
    F = c.response()
    act = metrics.activity(F)
    print(f"test accuracy {acc():.3f}; f = sum_e g_e E_e to {c.residual_error:.1e}")
    print(f"active experts {act.active} of {spec.num_parts}; mean |corr| {metrics.mean_abs_offdiag(metrics.correlation(F)):.3f}")
    conf = metrics.branch_confidence(c.parts, y[te])  # (E, N)
    onehot = nn.functional.one_hot(y[te], 10).float()  # (N, 10)
    per_class = conf @ onehot / onehot.sum(0)  # (E, 10): mean confidence per class
    with torch.no_grad():
        usage = model.gate(x[te]).softmax(-1).mean(0)  # (E,)
    for e in range(spec.num_parts):
        best = per_class[e].argsort(descending=True)[:3].tolist()
        with parts.silenced(model, spec, e):
            a = acc()
        print(f"  expert {e}: gate share {usage[e]:.2f}, most confident on digits {best}, accuracy without it {a:.3f}")


if __name__ == "__main__":
    main()
