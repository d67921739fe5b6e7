"""train-gan --track-every: the generator's branches tracked during training without changing it; the log
line a killed run wrote past its checkpoint is not written twice."""

from __future__ import annotations

import json

import pytest
import torch

from branchspec.checkpoint import load_checkpoint
from branchspec.data.embedded import embedded_domains
from branchspec.gan.runfiles import trim_log
from branchspec.gan.train import GanTrainConfig, train_gan
from branchspec.parts.tracker import read_records

TINY = dict(img_size=16, num_branches=3, batch_size=3, base_width=4, max_width=8, style_dim=4, d_base_width=4,
            d_max_width=8, engine="loop", sample_every=0, ckpt_every=2, precision="fp32", device="cpu")


@pytest.fixture(scope="module")
def data():
    return embedded_domains(16, n_per_domain=6, seed=0)


def test_tracked_run_trains_the_same_weights_and_records_the_branches(tmp_path, data):
    plain = train_gan(GanTrainConfig(**TINY, steps=4), tmp_path / "a", progress=False, data=data)
    train_gan(GanTrainConfig(**TINY, steps=2, track_every=1), tmp_path / "b", progress=False, data=data)
    tracked = train_gan(GanTrainConfig(**TINY, steps=4, track_every=1), tmp_path / "b", progress=False, resume=True,
                        data=data)
    ta, _ = load_checkpoint(plain)
    tb, _ = load_checkpoint(tracked)
    for k in ta:
        if not k.startswith("rng."):
            assert torch.equal(ta[k], tb[k]), k
    recs = read_records(tmp_path / "b" / "tracker.jsonl")
    assert [r["step"] for r in recs] == [0, 1, 2, 3]  # one per step, across the resume, none twice
    assert all(len(r["norms"]) == 3 and r["active"] + r["silent"] == 3 for r in recs)
    assert any(g > 0 for g in recs[-1]["grad_norms"])  # G's own .grad after its step


def test_trim_log_drops_lines_past_the_checkpoint_and_a_torn_line(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "d/loss": 1.0}) + "\n" for s in (10, 20, 30)) + '{"step": 4')
    trim_log(log, 20)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [10, 20]
    trim_log(tmp_path / "missing.jsonl", 5)  # no log yet: nothing to do
