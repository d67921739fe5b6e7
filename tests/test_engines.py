"""The engines of ``Branched``: two public choices, and the capability rule behind the default ``"packed"``.

Branches that pack run the packed network; branches that do not pack run the vmap
fallback, with the reason; branches vmap cannot run run the loop, with the reason, decided once per input kind
and mode (no timing: a resumed run takes the same path). Configs written by earlier versions with
``engine: "auto"`` or ``"fused"`` read back as ``"packed"``; given anew, those names are refused.
"""

import importlib.util
import json

import pytest
import torch
from torch import nn

from branchspec import Branched, options
from branchspec.branched import ENGINES
from branchspec.checkpoint import checkpoint_state, load_checkpoint, prefixed, save_checkpoint
from branchspec.classifier.config import RUN_RECORD_KEYS, TrainConfig
from branchspec.cli import build_parser, main
from branchspec.errors import ConfigError
from branchspec.gan.config import GanTrainConfig
from branchspec.loading import load_model
from branchspec.models.generator import GeneratorConfig
from branchspec.models.registry import model_spec
from branchspec.models.resnet import ClassifierConfig
from branchspec.models.toy_neuron import toy_model


def _mlp():
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))


class OwnParam(nn.Module):
    """A branch owning a parameter and no packing rule: not packable, but vmap runs it."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 2))

    def forward(self, x):
        return torch.tanh(x @ self.w)


CALLS = []  # forward calls of NoVmap, one entry each (a module attribute would change the packing fingerprint)


class NoVmap(OwnParam):
    """Not packable, and vmap cannot run it either: a Python branch on a parameter's value (``.item()``). It draws
    noise before that, so a vmap attempt consumes random numbers the loop would not."""

    def forward(self, x):
        CALLS.append(1)
        y = x @ self.w + 0.1 * torch.randn(x.shape[0], 2)
        return y * 2.0 if self.w.sum().item() > 0 else y


def test_two_public_choices_and_packed_by_default():
    assert ENGINES == ("loop", "packed")
    assert Branched(_mlp, 2).engine == "packed"
    assert importlib.util.find_spec("branchspec.engine_timing") is None  # timing lives in benchmarks/ only


def test_one_branch_follows_the_same_rule():
    """M = 1 is no special case: a packable branch runs as the packed network (the branch itself, in
    channels_last where set), one that vmap cannot run falls back to the loop."""
    m = Branched(_mlp, 1, seed=0)
    x = torch.randn(4, 3)
    torch.testing.assert_close(m(x), m.branches[0](x))
    assert m.runs_packed()
    assert m.engine_report() == {"engine": "packed", "shared": "packed"}
    n = Branched(NoVmap, 1, seed=0)
    torch.manual_seed(1)
    f = n(x)
    torch.manual_seed(1)
    torch.testing.assert_close(f, n.branches[0](x))
    assert not n.runs_packed()


def test_a_packable_model_runs_the_packed_network():
    a, b = Branched(_mlp, 3, engine="loop", seed=0), Branched(_mlp, 3, seed=0)
    x = torch.randn(5, 3)
    torch.testing.assert_close(a(x), b(x))
    assert b.runs_packed() and b.engine_report() == {"engine": "packed", "shared": "packed"}
    assert a.engine_report() == {"engine": "loop"}


def test_a_branch_without_a_packing_rule_runs_the_vmap_fallback_with_the_reason():
    a, b = Branched(OwnParam, 3, engine="loop", seed=0), Branched(OwnParam, 3, seed=0)
    x = torch.randn(5, 3)
    fa, fb = a(x), b(x)
    torch.testing.assert_close(fa, fb)
    fa.square().sum().backward()
    fb.square().sum().backward()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    report = b.engine_report()["shared"]
    assert not b.runs_packed()
    assert report == ("vmap (not packable: branch (OwnParam): OwnParam owns 'w' and has no packing rule "
                      "(register_packer))"), report


def test_a_branch_vmap_cannot_run_runs_the_loop_with_the_reason_decided_once():
    a, b = Branched(NoVmap, 3, engine="loop", seed=0), Branched(NoVmap, 3, seed=0)
    x = torch.randn(4, 3)
    outs = []
    for m in (a, b):
        torch.manual_seed(5)
        outs.append(m(x))
        outs.append(torch.rand(3))  # the RNG stream after the forward: the failed vmap attempt drew nothing
    torch.testing.assert_close(outs[0], outs[2])
    torch.testing.assert_close(outs[1], outs[3])
    report = b.engine_report()["shared"]
    assert report.startswith("vmap (not packable: branch (NoVmap)"), report
    assert report.endswith("; the loop in training mode: vmap cannot run the branch (vmap: It looks like you're "
                           "calling .item() on a Tensor)"), report
    before = len(CALLS)
    b(x)
    assert len(CALLS) - before == 3  # decided: the three branches one by one, no second vmap attempt
    b.eval()
    b(x)  # eval mode is its own decision
    assert "the loop in training and eval mode" in b.engine_report()["shared"]
    with pytest.raises(RuntimeError, match=r"\.item\(\)"):
        b.engine_outputs("vmap", x)  # forcing the fallback raises where it cannot run


def test_an_input_error_is_the_callers_and_decides_nothing():
    m = Branched(OwnParam, 2, seed=0)
    with pytest.raises(RuntimeError):
        m(torch.randn(4, 5))  # wrong width: vmap fails, and the loop fails too
    assert "loop" not in m.engine_report().get("shared", "")
    m(torch.randn(4, 3))
    assert m.engine_report()["shared"].startswith("vmap (not packable"), m.engine_report()


def test_the_rule_is_deterministic_so_two_runs_take_the_same_path():
    reports = []
    for _ in range(2):
        m = Branched(NoVmap, 2, seed=0)
        torch.manual_seed(0)
        f = m(torch.randn(3, 3))
        reports.append((m.engine_report(), f))
    assert reports[0][0] == reports[1][0]
    torch.testing.assert_close(reports[0][1], reports[1][1], rtol=0, atol=0)


# ----------------------------------------------------------------------------- old names, configs
def test_configs_refuse_the_old_names_given_anew_and_default_to_packed(tmp_path):
    assert TrainConfig(data="digits", out=str(tmp_path)).engine == "packed"
    assert GanTrainConfig().engine == "packed"
    assert ClassifierConfig().engine == "packed"
    assert GeneratorConfig(img_size=16, num_domains=2).engine == "packed"
    for old in ("auto", "fused"):
        with pytest.raises(ConfigError, match="engine"):
            TrainConfig(data="digits", out=str(tmp_path), engine=old)
        with pytest.raises(ConfigError, match="engine"):
            GanTrainConfig(engine=old)
        with pytest.raises(ValueError, match="engine must be one of"):
            ClassifierConfig(engine=old)
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train-classifier", "--data", "digits", "--out", "x", "--engine", old])


@pytest.mark.parametrize("old", ["auto", "fused"])
def test_an_old_config_file_reads_as_packed(tmp_path, old):
    run = tmp_path / "config.json"  # a train-classifier RUN/config.json of an earlier version
    run.write_text(json.dumps({"data": "digits", "out": "somewhere", "engine": old, "num_branches": 2,
                               "resolved_lr": 0.02, "model": {"engine": old}}))
    args = build_parser().parse_args(["train-classifier", "--data", "digits", "--out", "x", "--config", str(run)])
    assert options.values(args, TrainConfig, RUN_RECORD_KEYS)["engine"] == "packed"
    gan = tmp_path / "gan.json"  # a train-gan RUN/config.json: {"train": {...}, "generator": {...}}
    gan.write_text(json.dumps({"train": {"engine": old, "img_size": 16}, "generator": {"engine": old}}))
    assert options.load_file(gan, GanTrainConfig) == {"engine": "packed", "img_size": 16}


def test_an_old_checkpoint_loads_and_reads_as_packed(tmp_path):
    model = toy_model(2, seed=0)
    state = {"model": model_spec("toy", {"num_branches": 2, "engine": "auto"}),
             "train_config": {"engine": "fused", "seed": 0}}
    save_checkpoint(tmp_path / "old", prefixed("model", model.state_dict()), state)
    loaded, st = load_model(tmp_path / "old")
    assert isinstance(loaded, Branched) and loaded.engine == "packed"
    assert st["train_config"] == {"engine": "packed", "seed": 0}
    assert load_checkpoint(tmp_path / "old")[1]["model"]["config"]["engine"] == "packed"
    assert checkpoint_state(tmp_path / "old")["train_config"]["engine"] == "packed"


def test_a_run_recorded_with_engine_auto_resumes(tmp_path):
    out = tmp_path / "r"
    base = ["train-classifier", "--data", "digits", "--out", str(out), "--branches", "2", "--width", "1",
            "--subset", "32", "--batch-size", "16", "--epochs", "2", "--quiet", "--threads", "1"]
    n = torch.get_num_threads()
    try:
        assert main(base + ["--max-steps", "1"]) == 0
        tensors, state = load_checkpoint(out / "last")  # as an earlier version wrote it: engine "auto"
        state["train_config"]["engine"] = "auto"
        state["model"]["config"]["engine"] = "auto"
        save_checkpoint(out / "last", tensors, state)
        cfg = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps({**cfg, "engine": "auto"}))
        assert main(["train-classifier", "--config", str(out / "config.json"), "--out", str(out), "--quiet",
                     "--threads", "1", "--resume", "--max-steps", "2"]) == 0
        assert load_checkpoint(out / "last")[1]["step"] == 2
    finally:
        torch.set_num_threads(n)
