"""The class-transfer judge (apps.judge) against hand-computed values on a stand-in classifier."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from branchspec import Branched
from branchspec.apps.judge import ClassifierJudge, judge_generator, transfer_scores


class Paint(nn.Module):
    """v(x, t) = a · e_t on every pixel: paints channel t with amplitude a."""

    def __init__(self, a):
        super().__init__()
        self.a = a

    def forward(self, x, t):
        return self.a * nn.functional.one_hot(t, 3).float()[:, :, None, None].expand_as(x)


class Half(nn.Module):
    def forward(self, x):
        return 0.5 * x


def _generator():
    amps = itertools.count()
    return Branched(lambda: Paint([0.1, 0.15][next(amps)]), 2, residual=Half(), engine="loop")


# constant-colour images c_i (in [-1, 1]) and their source domains
COLOURS = [(0.6, 0.0, 0.0), (0.2, 0.4, 0.0), (0.0, 0.0, 0.3), (0.0, 0.8, 0.0)]
Y = [0, 1, 2, 0]


def _data():
    x = torch.tensor(COLOURS).view(4, 3, 1, 1).expand(4, 3, 4, 4).contiguous()
    return x, torch.tensor(Y)


def test_judge_hand_computed():
    # f(x, t) = 0.5 c + 0.25 e_t; the judge picks the brightest channel (argmax of c + 0.5 e_t):
    # image 0 (y 0): t=0 ok, t=1 → 0, t=2 → 0     image 1 (y 1): every t ok
    # image 2 (y 2): every t ok                    image 3 (y 0, looks like 1): t=0 → 1, t=1 ok, t=2 → 1
    judge = ClassifierJudge(lambda x: x.mean(dim=(2, 3)), [0, 1, 2])
    x, y = _data()
    res = judge_generator(_generator(), judge, x, y, batch_size=3)  # 2 batches
    assert res["transfer_accuracy"] == pytest.approx(5 / 8)
    assert res["source_retention"] == pytest.approx(3 / 4)
    assert res["judge_accuracy_inputs"] == pytest.approx(3 / 4)  # image 3 is judged 1
    assert res["judge_accuracy_residual"] == pytest.approx(3 / 4)
    assert res["transfer_matrix"] == [[0.5, 0.5, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    assert res["chance"] == pytest.approx(1 / 3) and res["images"] == 4
    assert res["input_dependence"] == pytest.approx([0.0, 0.0], abs=1e-9)  # Paint ignores x: a pure template
    # PSNR on [0, 1] images (x + 1) / 2: R − x = −c / 2 → −c / 4;  f_own − x = −c/2 + 0.25 e_y → −c/4 + e_y/8
    def psnr(diff_unit):
        return 10 * math.log10(1 / (np.sum(np.square(diff_unit)) / 3))
    c = np.array(COLOURS)
    e = np.eye(3)[Y]
    assert res["psnr_residual_only"] == pytest.approx(np.mean([psnr(-ci / 4) for ci in c]), abs=1e-4)
    assert res["psnr_own"] == pytest.approx(np.mean([psnr(-ci / 4 + ei / 8) for ci, ei in zip(c, e)]), abs=1e-4)
    # v_k(x, t) − v_k(x, y) = a_k (e_t − e_y): branch shares a_k² / Σ a²
    assert res["transfer_change_share"] == pytest.approx([0.01 / 0.0325, 0.0225 / 0.0325])


def test_transfer_scores_pure():
    pred = np.array([[0, 0, 1], [1, 1, 2], [2, 2, 2]])  # (N, D)
    s = transfer_scores(pred, np.array([0, 1, 2]))
    # pairs t ≠ y: (0,1)✗ (0,2)✗ (1,0)✗ (1,2)✓ (2,0)✗ (2,1)✗ → 1/6; own: ✓ ✓ ✓
    assert s["transfer_accuracy"] == pytest.approx(1 / 6) and s["source_retention"] == 1.0
    assert s["transfer_matrix"][1] == [0.0, 1.0, 1.0]
    # lift, by hand: (0,1) 0 − ½ (G(x0, 2) judged 1), (1,2) 1 − 0, the other four 0 − 0 → ½ / 6
    assert s["transfer_lift"] == pytest.approx(1 / 12)
    assert s["transfer_per_target"] == [0.0, 0.0, 0.5]


def test_transfer_lift_brute_force_and_bias():
    """The lift against an explicit loop on random predictions; 0 for a generator that ignores ỹ, 1 for perfect."""
    rng = np.random.default_rng(0)
    n, d = 40, 4
    pred, y = rng.integers(0, d, (n, d)), rng.integers(0, d, n)
    vals = []
    for i in range(n):
        for t in range(d):
            if t != y[i]:
                vals.append((pred[i, t] == t) - np.mean([pred[i, u] == t for u in range(d) if u != t]))
    assert transfer_scores(pred, y)["transfer_lift"] == pytest.approx(np.mean(vals))
    one_class = transfer_scores(np.full((n, d), 3), y)  # every output judged class 3
    assert one_class["transfer_lift"] == 0.0 and one_class["transfer_accuracy"] > 0
    keep = transfer_scores(np.repeat(y[:, None], d, 1), y)  # G keeps the source class
    assert keep["transfer_lift"] == 0.0 and keep["source_retention"] == 1.0
    assert transfer_scores(np.tile(np.arange(d), (n, 1)), y)["transfer_lift"] == 1.0


def test_judge_from_checkpoint_rejects_wrong_classes(tmp_path):
    from branchspec.errors import ConfigError
    from branchspec.models.registry import model_spec
    from branchspec.models.resnet import ClassifierConfig, build_classifier
    from branchspec.checkpoint import prefixed, save_checkpoint

    cfg = ClassifierConfig(num_branches=1, width=2, num_classes=3)
    model = build_classifier(cfg)
    state = {"model": model_spec("classifier", cfg.to_dict()), "train_config": {"clamp": False},
             "data": {"mean": [0.5] * 3, "std": [0.25] * 3, "class_names": ["cat", "dog", "ship"]}}
    save_checkpoint(tmp_path / "clf", prefixed("model", model.state_dict()), state)
    judge = ClassifierJudge.from_checkpoint(tmp_path / "clf", ["dog", "cat"])
    assert list(judge.class_of_domain) == [1, 0]
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    model.eval()
    want = model((((x + 1) / 2) - 0.5) / 0.25)[:, [1, 0]].argmax(1)
    assert torch.equal(judge.predict_domain(x), want)
    with pytest.raises(ConfigError, match="^classifier: .* is not a classifier") as e:
        ClassifierJudge.from_checkpoint(tmp_path / "clf", ["cat", "horse"], field="classifier")
    assert e.value.field == "classifier"
    with pytest.raises(ConfigError, match="^judge: "):  # the library names no CLI flag: its field by default
        ClassifierJudge.from_checkpoint(tmp_path / "clf", ["cat", "horse"])
    with pytest.raises(ConfigError, match="no such checkpoint"):
        ClassifierJudge.from_checkpoint(tmp_path / "nope", ["cat"])


def test_transfer_examples_and_grid(tmp_path):
    """Same hand-computed calls as test_judge_hand_computed, for the first image of each source domain."""
    from PIL import Image

    from branchspec.apps.judge import transfer_examples
    from branchspec.figures.gan import transfer_grid

    judge = ClassifierJudge(lambda x: x.mean(dim=(2, 3)), [0, 1, 2])
    x, y = _data()
    ex = transfer_examples(_generator(), judge, x, y, per_domain=1)
    assert ex["sources"].tolist() == [0, 1, 2]  # images 0, 1, 2 (image 3 is the second of domain 0)
    assert ex["judged"].tolist() == [[0, 0, 0], [0, 1, 2], [0, 1, 2]]
    assert ex["outputs"].shape == (3, 3, 3, 4, 4)
    np.testing.assert_allclose(ex["outputs"][0, 2], 0.5 * x[0].numpy() + 0.25 * np.eye(3)[2][:, None, None], atol=1e-6)
    np.savez(tmp_path / "t.npz", **ex)
    png = transfer_grid(tmp_path / "t.npz", ["r", "g", "b"], tmp_path / "t.png")
    w, h = Image.open(png).size
    assert w > 250 and h > 250
    with pytest.raises(ValueError, match="no image"):
        transfer_examples(_generator(), judge, x, torch.tensor([5, 5, 5, 5]), per_domain=1)
