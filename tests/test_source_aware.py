"""train-gan --source-aware (issue 11, a departure): G's style from (source, target) domain pairs.

Off by default: a default generator must draw the same weights and give the same outputs; a
source-aware one must be told each image's own domain by training, decomposition and the judge.
"""

import pytest
import torch
from PIL import Image

from branchspec.apps.decompose import decompose_images
from branchspec.apps.judge import ClassifierJudge, judge_generator
from branchspec.cli import main
from branchspec.data.embedded import embedded_domains
from branchspec.errors import UsageError
from branchspec.models.generator import (DomainStyle, GeneratorConfig, build_generator, domain_pairs,
                                         generator_labels, is_source_aware)
from branchspec.checkpoint import load_checkpoint
from branchspec.gan.train import GanTrainConfig, GanTrainer, train_gan

TINY_G = dict(img_size=16, num_domains=3, num_branches=2, base_width=4, max_width=8, style_dim=4, mapping_width=4,
              engine="loop")
TINY = dict(img_size=16, num_branches=2, batch_size=4, base_width=4, max_width=8, style_dim=4, d_base_width=8,
            d_max_width=16, n_per_domain=4, engine="loop", sample_every=0, ckpt_every=0)


def test_style_adds_a_source_code_by_hand():
    torch.manual_seed(0)
    style = DomainStyle(3, 4, 5, source_aware=True)
    y = torch.tensor([[0, 2], [1, 2], [2, 2]])  # three sources, one target
    by_hand = torch.stack([style.mlp(style.codes[2] + style.source_codes[s]) for s in range(3)])
    torch.testing.assert_close(style(y), by_hand)
    assert not torch.allclose(style(y)[0], style(y)[1])  # the source changes the style
    with pytest.raises(ValueError, match="own domain"):
        style(torch.tensor([2, 2]))  # targets alone
    with pytest.raises(ValueError, match="own domain"):
        style(torch.tensor([[-1, 2]]))  # an unknown source


def test_default_generator_is_unchanged_and_ignores_sources():
    plain = build_generator(GeneratorConfig(**TINY_G))
    aware = build_generator(GeneratorConfig(**TINY_G, source_aware=True))
    assert not is_source_aware(plain) and is_source_aware(aware)
    extra = {k for k in aware.state_dict()} - set(plain.state_dict())
    assert extra and all(k.endswith("style.source_codes") for k in extra)
    x, y, t = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2]), torch.tensor([1, 1, 0])
    torch.testing.assert_close(plain(x, domain_pairs(y, t)), plain(x, t))  # pairs = targets for a default G
    assert generator_labels(plain, y, t) is t
    torch.testing.assert_close(generator_labels(aware, y, t), torch.stack([y, t], 1))


def _record_labels(gen):
    seen = []
    gen.branches[0].style.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    return seen


def test_training_hands_pairs_to_a_source_aware_generator():
    data = embedded_domains(16, n_per_domain=4)
    trainer = GanTrainer(GanTrainConfig(**TINY, steps=1, source_aware=True, rec_weight=1.0), "unused",
                         progress=False, data=data)
    seen = _record_labels(trainer.G)
    trainer.train_step()
    assert seen and all(s.shape == (4, 2) for s in seen)
    idx = trainer.batch_indices(0)
    _, y = data.batch(idx)
    torch.testing.assert_close(seen[0][:, 0], y)  # the source column is the batch's own domains


def test_checkpoint_records_the_option_and_resume_keeps_it(tmp_path):
    data = embedded_domains(16, n_per_domain=4)
    last = train_gan(GanTrainConfig(**TINY, steps=2, source_aware=True), tmp_path, progress=False, data=data)
    tensors, state = load_checkpoint(last)
    assert state["train_config"]["source_aware"] is True
    assert any(k.endswith("style.source_codes") for k in tensors)
    with pytest.raises(Exception, match="source_aware"):
        train_gan(GanTrainConfig(**{**TINY, "steps": 3}), tmp_path, progress=False, resume=True, data=data)


def test_judge_and_decompose_pass_each_images_own_domain(tmp_path):
    torch.manual_seed(0)
    gen = build_generator(GeneratorConfig(**TINY_G, source_aware=True)).eval()
    seen = _record_labels(gen)
    x, y = torch.rand(4, 3, 16, 16) * 2 - 1, torch.tensor([0, 2, 1, 2])
    judge = ClassifierJudge(lambda im: im.mean(dim=(2, 3)), [0, 1, 2])
    res = judge_generator(gen, judge, x, y, batch_size=4)
    assert 0 <= res["transfer_accuracy"] <= 1
    assert len(seen) == 3 and all(torch.equal(s[:, 0], y) for s in seen)  # one pass per target, sources = y
    assert [int(s[0, 1]) for s in seen] == [0, 1, 2]

    domains = ["cat", "dog", "wild"]
    paths = []
    for i, d in enumerate(["dog", "wild"]):
        (tmp_path / "in" / d).mkdir(parents=True)
        p = tmp_path / "in" / d / f"{i}.png"
        Image.new("RGB", (16, 16), (40 * i, 90, 200)).save(p)
        paths.append(p)
    seen.clear()
    decompose_images(gen, paths, tmp_path / "out", domains, 16, domain="cat")
    torch.testing.assert_close(seen[0], torch.tensor([[1, 0], [2, 0]]))  # own domain from the folder, target cat
    loose = tmp_path / "loose.png"
    Image.new("RGB", (16, 16)).save(loose)
    with pytest.raises(UsageError, match="loose.png: a source-aware generator needs"):
        decompose_images(gen, [loose], tmp_path / "out2", domains, 16, domain="cat")
    assert not (tmp_path / "out2" / "decomposition.json").exists()


def test_cli_writes_the_option(tmp_path):
    out = tmp_path / "run"
    argv = ["train-gan", "--out", str(out), "--img-size", "16", "--branches", "2", "--steps", "1", "--batch-size",
            "2", "--base-width", "4", "--max-width", "8", "--engine", "loop", "--no-progress", "--source-aware",
            "--sample-every", "0", "--ckpt-every", "0"]
    assert main(argv) == 0
    import json

    assert json.loads((out / "config.json").read_text())["train"]["source_aware"] is True
