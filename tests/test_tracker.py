"""Tracker: identical training with and without it, records against direct metrics, streaming covariance."""

import csv
import json

import pytest
import torch
from torch import nn

from branchspec import metrics, parts
from branchspec.figures.tracking import draw_tracking


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.bn = nn.BatchNorm1d(6)
        self.attn = nn.MultiheadAttention(8, 2, dropout=0.3, batch_first=True)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # (B, L=6, 4)
        h = self.bn(self.inp(x))  # BatchNorm over the 6 positions as channels
        h = self.drop(self.attn(h, h, h)[0])
        return self.head(h.mean(1))


def train(make_tracker=None, steps=12):
    torch.manual_seed(0)
    model = Tiny()
    tracker = make_tracker(model) if make_tracker else None
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(5, 6, 4, generator=gen), torch.randint(0, 3, (5,), generator=gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if tracker is not None:
            tracker.step(model, (x, y))
        opt.step()
    return model


def ce(out, y):
    return nn.functional.cross_entropy(out, y, reduction="sum")


def test_training_with_and_without_tracker_is_identical(tmp_path):
    ref = train()
    trackers = []

    def make(model):
        trackers.append(parts.Tracker(parts.heads(model.attn), tmp_path, every=3, loss_fn=ce, probe_every=6, probes=2))
        return trackers[0]

    got = train(make)
    for (n, a), b in zip(ref.state_dict().items(), got.state_dict().values()):
        assert torch.equal(a, b), n
    assert got.training and got.attn.training
    recs = [json.loads(line) for line in (tmp_path / "tracker.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [0, 3, 6, 9]
    assert "probe_block_diagonality" in recs[0] and "probe_block_diagonality" not in recs[1]
    assert all(r["grad_source"] == ".grad" and len(r["grad_norms"]) == 2 for r in recs)
    rows = list(csv.DictReader((tmp_path / "tracker.csv").open()))
    assert len(rows) == 4 and "norms_1" in rows[0]
    assert draw_tracking(tmp_path, tmp_path / "t.png").stat().st_size > 0


def test_record_matches_direct_metrics_and_gradients(tmp_path):
    torch.manual_seed(0)
    model = Tiny()
    spec = parts.heads(model.attn)
    batches = [(torch.randn(4, 6, 4), torch.randint(0, 3, (4,))) for _ in range(3)]
    tr = parts.Tracker(spec, tmp_path, eval_batches=batches, loss_fn=ce)
    rec = tr.step(model, batches[0])
    V = torch.cat([parts.contributions(model, spec, x).parts for x, _ in batches], 1)  # (M, N, L, E)
    F = metrics.response_matrix(V)
    act = metrics.activity(F)
    assert (rec["active"], rec["silent"], rec["samples"]) == (act.active, act.silent, 12)
    assert abs(rec["mean_abs_corr"] - metrics.mean_abs_offdiag(metrics.correlation(F))) < 1e-5
    torch.testing.assert_close(torch.tensor(rec["norms"], dtype=torch.float64), metrics.branch_norms(F).double(), atol=1e-4, rtol=1e-5)
    model.eval()
    ref = parts.gradient_norms(model, spec, *batches[0], ce)
    assert rec["grad_source"].startswith("loss_fn")
    torch.testing.assert_close(torch.tensor(rec["grad_norms"], dtype=torch.float64), ref, atol=1e-5, rtol=1e-5)
    assert tr.step(model, batches[0]) is None  # step 1 of every=20


def test_streaming_covariance_equals_full():
    V = torch.randn(4, 30, 2, 3, dtype=torch.float64)
    acc = metrics.StreamingCovariance("norm")
    for i in range(0, 30, 7):
        acc.update(V[:, i:i + 7])
    F = metrics.response_matrix(V, "norm")
    torch.testing.assert_close(acc.covariance, metrics.covariance(F).double())
    torch.testing.assert_close(acc.correlation(), metrics.correlation(F).double())
    assert acc.activity().mask.tolist() == metrics.activity(F).mask.tolist() and acc.samples == 30


def test_resume_at_drops_records_past_the_step_and_counts_on(tmp_path):
    conv = nn.Conv1d(4, 4, 1, groups=2)
    spec = parts.groups(conv)
    tracker = parts.Tracker(spec, tmp_path, every=2)
    for _ in range(7):  # steps 0, 2, 4, 6 measured
        tracker.step(conv, torch.randn(3, 4, 5))
    again = parts.Tracker(spec, tmp_path, every=2)
    again.resume_at(3)
    assert [r["step"] for r in parts.read_records(tmp_path)] == [0, 2] and again.steps == 3
    again.step(conv, torch.randn(3, 4, 5))  # step 3: not measured
    again.step(conv, torch.randn(3, 4, 5))  # step 4
    rows = list(csv.DictReader(open(tmp_path / "tracker.csv")))
    assert [r["step"] for r in rows] == ["0", "2", "4"] and [r["step"] for r in again.records] == [0, 2, 4]
    parts.Tracker(spec, tmp_path).resume_at(0)
    assert parts.read_records(tmp_path) == [] and (tmp_path / "tracker.csv").read_text() == ""


def test_model_args_pass_extra_inputs_to_a_conditioned_model(tmp_path):
    """A conditioned Branched (FiLM-like: each branch scales by the label's embedding) measured with model_args."""
    from branchspec import Branched

    class Cond(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.emb = torch.nn.Linear(3, 2), torch.nn.Embedding(4, 2)

        def forward(self, x, c):
            return self.lin(x) * self.emb(c)

    model = Branched(Cond, 3, engine="loop", seed=0)
    x, c = torch.randn(16, 3), torch.randint(0, 4, (16,))
    tracker = parts.Tracker(parts.branches(model), tmp_path, every=1, model_args=lambda b: (b[1],))
    rec = tracker.step(model, (x, c))
    v = model.branch_outputs(x, c)  # (M, B, 2), the same inputs by hand
    expected = metrics.branch_norms(metrics.response_matrix(v))
    assert rec["norms"] == pytest.approx(expected.tolist(), rel=1e-5)
    with pytest.raises(ValueError, match="model_args"):
        parts.Tracker(parts.branches(model), tmp_path, model_args=lambda b: (b[1],), loss_fn=lambda f, y: f.sum())
