"""train-gan's two departures from §7's adversarial-only loss (issue 11): --cls-weight and --rec-weight.

Both are off by default; the default run must be unchanged by their existence.
"""

import itertools

import numpy as np
import pytest
import torch

from branchspec.cli import main
from branchspec.data.embedded import embedded_domains
from branchspec.models.discriminator import Discriminator, DiscriminatorConfig
import branchspec.gan.losses as gan_losses
from branchspec.checkpoint import load_checkpoint
from branchspec.gan.train import GanTrainConfig, GanTrainer, train_gan

TINY = dict(img_size=16, num_branches=2, batch_size=4, base_width=4, max_width=8, style_dim=4, d_base_width=8,
            d_max_width=16, n_per_domain=4, engine="loop", sample_every=0, ckpt_every=0)


@pytest.fixture(scope="module")
def data():
    return embedded_domains(16, n_per_domain=4)


def test_regeneration_loss_against_a_loop():
    torch.manual_seed(0)
    x_fake, x = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    y, y_trg = torch.tensor([0, 1, 2, 1, 0]), torch.tensor([0, 2, 2, 0, 0])
    total, count = 0.0, 0
    for i in range(5):
        if y_trg[i] == y[i]:
            for c, h, w in itertools.product(range(3), range(4), range(4)):
                total += abs(float(x_fake[i, c, h, w]) - float(x[i, c, h, w]))
                count += 1
    got = gan_losses.regeneration_loss(x_fake, x, y_trg, y)
    assert got.item() == pytest.approx(total / count, rel=1e-5)
    none = gan_losses.regeneration_loss(x_fake.requires_grad_(True), x, y_trg, (y_trg + 1) % 3)
    assert none.item() == 0.0
    none.backward()  # a batch without own-domain samples still gives a graph (zero gradient)
    assert torch.count_nonzero(x_fake.grad) == 0


def test_domain_class_loss_is_cross_entropy():
    logits, y = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]), torch.tensor([0, 2])
    by_hand = (-(torch.log_softmax(logits[0], 0)[0]) - torch.log_softmax(logits[1], 0)[2]) / 2
    assert gan_losses.domain_class_loss(logits, y).item() == pytest.approx(by_hand.item())


def test_domain_head_leaves_the_default_discriminator_unchanged():
    cfg = dict(img_size=16, num_domains=3, base_width=8, max_width=16)
    torch.manual_seed(0)
    plain = Discriminator(DiscriminatorConfig(**cfg))
    torch.manual_seed(0)
    aux = Discriminator(DiscriminatorConfig(**cfg, domain_head=True))
    shared = plain.state_dict()
    for k, v in aux.state_dict().items():
        if k.startswith("domain_head"):
            assert k not in shared
        else:
            assert torch.equal(v, shared[k]), k
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([0, 2])
    real_fake, classes = aux(x, y, classes=True)
    assert torch.equal(real_fake, plain(x, y)) and classes.shape == (2, 3)
    with pytest.raises(ValueError, match="domain_head"):
        plain(x, y, classes=True)


def test_departures_enter_the_losses(data):
    trainer = GanTrainer(GanTrainConfig(**TINY, steps=1, cls_weight=1.0, rec_weight=5.0, same_domain=1.0), "unused",
                         progress=False, data=data)
    logs = trainer.train_step()
    assert {"d/cls", "g/cls", "g/rec"} <= set(logs)
    assert trainer.D.domain_head.weight.grad is not None  # D's classifier was trained on the reals
    default = GanTrainer(GanTrainConfig(**TINY, steps=1), "unused", progress=False, data=data)
    assert default.D.domain_head is None and not {"d/cls", "g/cls", "g/rec"} & set(default.train_step())


def test_rec_weight_pulls_regeneration_towards_the_input(data):
    """Own-domain targets only: with a large --rec-weight the L1 of G(x, y) vs x falls; without it, it does not."""
    torch.set_num_threads(1)

    def rec_curve(weight):
        cfg = GanTrainConfig(**TINY, steps=30, rec_weight=weight, same_domain=1.0, lr=1e-3, seed=1)
        trainer = GanTrainer(cfg, "unused", progress=False, data=data)
        x, y = data.batch(torch.arange(len(data)))
        before = gan_losses.regeneration_loss(trainer.G(x, y), x, y, y).item()
        for _ in range(cfg.steps):
            trainer.train_step()
        return before, gan_losses.regeneration_loss(trainer.G(x, y), x, y, y).item()

    before, with_rec = rec_curve(50.0)
    _, without = rec_curve(0.0)
    assert with_rec < 0.8 * before, (before, with_rec)  # measured 0.131 -> 0.055
    assert with_rec < without, (with_rec, without)


def test_checkpoint_records_and_resume_keeps_the_weights(tmp_path, data):
    cfg = GanTrainConfig(**TINY, steps=2, cls_weight=0.5, rec_weight=2.0)
    last = train_gan(cfg, tmp_path, progress=False, data=data)
    tensors, state = load_checkpoint(last)
    assert state["train_config"]["cls_weight"] == 0.5 and state["train_config"]["rec_weight"] == 2.0
    assert any(k.startswith("D.domain_head") or "domain_head" in k for k in tensors)
    with pytest.raises(Exception, match="cls_weight"):
        train_gan(GanTrainConfig(**{**TINY, "steps": 3}, cls_weight=0.0, rec_weight=2.0), tmp_path, progress=False,
                  resume=True, data=data)
    with pytest.raises(ValueError, match="cls_weight"):
        GanTrainConfig(**TINY, cls_weight=-1.0)


def test_cli_rejects_negative_weights(tmp_path, capsys):
    common = ["train-gan", "--out", str(tmp_path), "--img-size", "16", "--no-progress"]
    for arg in ("--cls-weight", "--rec-weight"):
        assert main(common + [arg, "-0.5"]) == 2
        err = capsys.readouterr().err
        assert arg in err and err.count("\n") == 1


def test_training_curves_add_a_departure_panel(tmp_path):
    import json

    from PIL import Image

    from branchspec.figures.gan import training_curves

    base = {"d/real": 0.6, "d/fake": 0.7, "d/acc_real": 0.6, "d/acc_fake": 0.55, "d/r1": 0.02, "g/adv": 0.8}
    plain, extra = tmp_path / "plain.jsonl", tmp_path / "extra.jsonl"
    plain.write_text("\n".join(json.dumps({"step": s, **base}) for s in (10, 20)) + "\n")
    extra.write_text("\n".join(json.dumps({"step": s, **base, "d/cls": 1.2, "g/cls": 1.3, "g/rec": 0.1})
                               for s in (10, 20)) + "\n")
    w_plain = Image.open(training_curves(plain, tmp_path / "p.png")).size[0]
    w_extra = Image.open(training_curves(extra, tmp_path / "e.png")).size[0]
    assert w_extra > 1.15 * w_plain  # five panels instead of four


def test_transfer_fidelity_figure(tmp_path):
    from PIL import Image

    from branchspec.figures.gan import transfer_fidelity

    def j(t, p):
        return {"transfer_accuracy": t, "psnr_own": p, "psnr_residual_only": 25.0, "chance": 0.25}

    png = transfer_fidelity({"a": [j(0.3, 24.0), j(0.4, 26.0)], "b": [j(0.62, 27.5)]}, tmp_path / "tf.png")
    im = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert im.shape[0] > 300 and im.shape[1] > 400
    green = (im[..., 1] > im[..., 0] + 8) & (im[..., 1] > im[..., 2] + 8)  # the shaded target corner is drawn
    assert green.sum() > 500
