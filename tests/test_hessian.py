"""Hessian analysis (§5.2, §8): exact Hessians against brute force, block structure, eq. 14, probes, CLI."""

import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from branchspec import Branched
from branchspec.cli import main
from branchspec.errors import BranchspecError
from branchspec.hessian import (
    ParamSubset,
    block_diagonality,
    block_norms,
    exact_hessian,
    scale_free,
    select_params,
)
from branchspec.hessian.factors import blockwise_hessian, eq14_report, hessian_factors, within_branch_curvature
from branchspec.hessian.probes import exact_stderr, probe_block_norms, rademacher_variance


def l2(f, t):
    return 0.5 * ((f - t) ** 2).sum()


def mlp_model(m=3, seed=0, residual=None):
    model = Branched(lambda: nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)), m,
                     residual=residual, seed=seed)
    return model.double()


def reference_hessian(model, subset, x, y, loss_fn, on="f"):
    """Brute force: an explicit loop over branches, dense torch.autograd.functional.hessian."""
    def loss_of(theta):
        outs, i = [], 0
        for k, branch in enumerate(model.branches):
            params = {}
            for name, shape, size in zip(subset.names, subset.shapes, subset.sizes):
                params[name] = theta[i:i + size].reshape(shape)
                i += size
            outs.append(model.branch_gain[k] * functional_call(branch, params, (x,)))
        v = torch.stack(outs)  # (M, B, C)
        if on == "branches":
            return loss_fn(v, y)
        f = v.sum(0)
        r = model.residual_output(x)
        return loss_fn(f if r is None else f + r, y)

    return torch.autograd.functional.hessian(loss_of, subset.flat(model))


@pytest.mark.parametrize("selector", ["all", "first-layer", "2.weight", "0.*"])
def test_exact_hessian_matches_autograd_and_is_symmetric(selector):
    model = mlp_model()
    x, y = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    sub = select_params(model, selector)
    H = exact_hessian(model, sub, x, y, l2)
    ref = reference_hessian(model, sub, x, y, l2)
    torch.testing.assert_close(H, ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(H, H.T, rtol=1e-10, atol=1e-12)
    assert H.shape == (sub.num_params, sub.num_params)


def test_blockwise_equals_direct_with_residual_silence_and_cross_entropy():
    model = mlp_model(4, residual=nn.Linear(2, 2).double())
    model.silence(2, 0.5)
    x = torch.randn(6, 2, dtype=torch.float64)
    labels = torch.randint(0, 2, (6,))

    def ce(f, t):
        return nn.functional.cross_entropy(f, t, reduction="sum")

    sub = select_params(model, "all")
    Hd = exact_hessian(model, sub, x, labels, ce)
    Hb, _ = blockwise_hessian(model, sub, x, labels, ce)
    ref = reference_hessian(model, sub, x, labels, ce)
    torch.testing.assert_close(Hd, ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(Hb, ref, rtol=1e-9, atol=1e-10)


def test_independent_branches_score_exactly_one():
    model = Branched(lambda: nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)), 3, seed=1)
    x, y = torch.randn(7, 2), torch.randn(7, 1)

    def per_branch_loss(v, t):  # Σ_k ℓ(v_k): no branch sees another
        return 0.5 * ((v - t[None]) ** 2).sum()

    sub = select_params(model, "all")
    H = exact_hessian(model, sub, x, y, per_branch_loss, on="branches")
    norms = block_norms(H, sub.boundaries)
    assert block_diagonality(norms) == 1.0
    assert (norms - torch.diag(norms.diagonal())).abs().max().item() == 0.0
    # the same model under a loss of f is not block diagonal
    Hf = exact_hessian(model, sub, x, y, l2)
    assert block_diagonality(block_norms(Hf, sub.boundaries)) < 0.99


def test_block_diagonality_of_a_constructed_matrix():
    # two 2×2 branch blocks [[1, 2], [2, 1]] (‖·‖² = 10 each) and off-blocks of ones (‖·‖² = 4 each):
    # Σ_k ‖H_kk‖² / ‖H‖² = 20 / 28 = 5/7; scaling branch 0's rows and columns by 3 gives (810 + 10) / (810 + 10 + 2·36)
    H = torch.tensor([[1., 2., 1., 1.], [2., 1., 1., 1.], [1., 1., 1., 2.], [1., 1., 2., 1.]], dtype=torch.float64)
    assert block_diagonality(block_norms(H, (0, 2, 4))) == pytest.approx(5 / 7, rel=1e-12)
    S = torch.diag(torch.tensor([3., 3., 1., 1.], dtype=torch.float64))
    assert block_diagonality(block_norms(S @ H @ S, (0, 2, 4))) == pytest.approx(820 / 892, rel=1e-12)
    assert block_diagonality(block_norms(H, (0, 4))) == 1.0  # one branch: everything is on the diagonal


def test_block_structure_against_loops():
    H = torch.randn(7, 7)
    bnd = (0, 2, 5, 7)
    norms = block_norms(H, bnd)
    for k in range(3):
        for l in range(3):
            ref = sum(H[i, j] ** 2 for i in range(bnd[k], bnd[k + 1]) for j in range(bnd[l], bnd[l + 1])) ** 0.5
            assert norms[k, l].item() == pytest.approx(ref.item(), rel=1e-5)
    tot = sum(norms[k, l] ** 2 for k in range(3) for l in range(3))
    assert block_diagonality(norms) == pytest.approx((sum(norms[k, k] ** 2 for k in range(3)) / tot).item(), rel=1e-6)
    sf = scale_free(norms)
    for k in range(3):
        for l in range(3):
            assert sf[k, l].item() == pytest.approx((norms[k, l] / (norms[k, k] * norms[l, l]).sqrt()).item(), rel=1e-5)
    assert scale_free(torch.zeros(2, 2)).abs().sum() == 0


def test_eq14_product_equals_entry_including_a_sample_mixing_loss():
    model = mlp_model(3, seed=2)
    x, y = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)

    def mixing(f, t):  # not a sum over samples: d2L/df2 couples samples
        return ((f - t).sum(0) ** 2).sum() + 0.5 * ((f - t) ** 2).sum()

    for loss in (l2, mixing):
        sub = select_params(model, "first-layer")
        ref = reference_hessian(model, sub, x, y, loss)
        fac = hessian_factors(model, sub, x, y, loss)
        b = sub.boundaries
        for k, l in itertools.permutations(range(3), 2):
            blk = ref[b[k]:b[k + 1], b[l]:b[l + 1]]
            torch.testing.assert_close(fac.offblock(k, l), blk, rtol=1e-9, atol=1e-10)
            # the per-sample terms add up to the entry
            torch.testing.assert_close(fac.terms(k, l).sum(0), blk, rtol=1e-9, atol=1e-10)
        rep = eq14_report(ref, fac, b)
        assert rep["product_max_error"] < 1e-10
        chunked = hessian_factors(model, sub, x, y, loss, sample_chunk=2)  # 3 chunks of samples
        torch.testing.assert_close(chunked.distributive, fac.distributive, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(chunked.collaborative, fac.collaborative, rtol=1e-12, atol=1e-14)


def test_zero_distributive_factors_remove_their_terms():
    from branchspec.toy import toy_model

    model = toy_model(4, seed=0)
    x = torch.tensor([[-1.0], [0.0], [0.0], [1.0]])  # Toy1: dv/dw = σ'(·)·x is 0 at x = 0
    y = torch.tensor([[1.0], [0.5], [0.5], [1.0]])
    sub = select_params(model, "all")
    H = exact_hessian(model, sub, x, y, l2)
    fac = hessian_factors(model, sub, x, y, l2)
    rep = eq14_report(H, fac, sub.boundaries)
    # 2 of 4 samples × the weight (1 of 2 parameters) -> exactly a quarter of the triples
    assert rep["distributive_zero_fraction"] == 0.25
    assert rep["offblock_mass_at_zero_distributive"] == 0.0
    assert rep["product_max_error"] < 1e-6
    # the terms at x = 0 for the weight rows are exactly zero, the others are not all zero
    t = fac.terms(0, 1)  # (N, 2, 2); row 0 = weight of branch 0
    assert t[1:3, 0].abs().max().item() == 0.0
    assert t[[0, 3], 0].abs().max().item() > 0


def test_rademacher_variance_by_enumeration():
    A = torch.randn(3, 5, dtype=torch.float64)
    vals = []
    for signs in itertools.product([-1.0, 1.0], repeat=5):
        z = torch.tensor(signs, dtype=torch.float64)
        vals.append((A @ z).pow(2).sum().item())
    vals = np.array(vals)
    assert vals.mean() == pytest.approx(A.pow(2).sum().item(), rel=1e-12)  # unbiased
    assert rademacher_variance(A) == pytest.approx(vals.var(), rel=1e-10)


def test_probe_estimate_within_its_stated_error():
    model = mlp_model(3, seed=3)
    x, y = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    sub = select_params(model, "all")
    H = exact_hessian(model, sub, x, y, l2)
    exact_sq = block_norms(H, sub.boundaries) ** 2
    k = 64
    est = probe_block_norms(model, sub, x, y, l2, probes=k, seed=0)
    se = exact_stderr(H, sub.boundaries, k)
    assert ((est.squared - exact_sq).abs() <= 4 * se + 1e-9).all()
    # the sample standard error agrees with the true one to within a factor 2
    mask = se > 1e-6
    ratio = est.stderr[mask] / se[mask]
    assert ((ratio > 0.5) & (ratio < 2.0)).all()
    assert abs(block_diagonality(est.norms) - block_diagonality(exact_sq.sqrt())) < 0.1


def test_memory_budget_refuses_in_one_line():
    model = mlp_model()
    x, y = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    sub = select_params(model, "all")
    for fn in (lambda: exact_hessian(model, sub, x, y, l2, budget_bytes=100),
               lambda: blockwise_hessian(model, sub, x, y, l2, budget_bytes=100)):
        with pytest.raises(BranchspecError) as e:
            fn()
        msg = str(e.value)
        assert "\n" not in msg and "GiB" in msg and "budget" in msg


def test_select_params_layout_and_errors():
    model = mlp_model(2)
    sub = select_params(model, "first-layer")
    assert sub.names == ("0.weight", "0.bias") and sub.per_branch == 9
    assert select_params(model, "last-layer").names == ("2.weight", "2.bias")
    assert select_params(model, "2.bias,0.weight").names == ("0.weight", "2.bias")  # registration order
    assert select_params(model, "all").num_params == sum(model.parameters_per_branch())
    flat = sub.flat(model)
    ref = torch.cat([torch.cat([model.branches[k][0].weight.reshape(-1), model.branches[k][0].bias])
                     for k in range(2)])
    torch.testing.assert_close(flat, ref)
    back = sub.unflatten(flat)
    torch.testing.assert_close(back["branches.1.0.bias"], model.branches[1][0].bias.detach())
    for bad in ["nope", "3.*", " , "]:
        with pytest.raises(BranchspecError) as e:
            select_params(model, bad)
        assert "\n" not in str(e.value)
    with pytest.raises(BranchspecError):
        ParamSubset("x", (), (), 2)


# ----------------------------------------------------------------------------- CLI and demo
def _toy_checkpoint(path, seed=0, m=4):
    from branchspec.models.registry import model_spec
    from branchspec.toy import toy_model
    from branchspec.checkpoint import prefixed, save_checkpoint

    model = toy_model(m, seed=seed)
    save_checkpoint(path, prefixed("model", model.state_dict()),
                    {"model": model_spec("toy", {"num_branches": m}), "data": "toy2", "loss": "l2"})
    return path


def test_cli_toy_writes_json_npz_and_figures(tmp_path, capsys):
    a, b = _toy_checkpoint(tmp_path / "a", 0), _toy_checkpoint(tmp_path / "b", 1)
    out = tmp_path / "out"
    rc = main(["hessian", "--checkpoint", str(a), "--compare-checkpoint", str(b), "--params", "all",
               "--batch", "4", "--probes", "4", "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "hessian.json").read_text())
    assert doc["num_params"] == 8 and np.asarray(doc["block_norms"]).shape == (4, 4)
    assert doc["boundaries"] == [0, 2, 4, 6, 8]
    with np.load(out / "hessian.npz") as z:
        H = z["H"].astype(np.float64)
    on_blocks = sum((H[a:a + 2, a:a + 2] ** 2).sum() for a in (0, 2, 4, 6))  # by hand: Σ_k ‖H_kk‖² / ‖H‖²
    assert doc["block_diagonality"] == pytest.approx(on_blocks / (H ** 2).sum(), rel=1e-5)
    assert "toy2" in doc["data"] and doc["compare"]["num_params"] == 8
    assert doc["config"]["params"] == "all" and doc["config"]["probes"] == 4
    assert doc["column_check_max_rel_error"] < 1e-5 and doc["eq14"]["product_max_error"] < 1e-5
    with np.load(out / "hessian.npz") as z:
        assert z["H"].shape == (8, 8) and z["H_compare"].shape == (8, 8)
        norms = block_norms(torch.from_numpy(z["H"]), doc["boundaries"])
    np.testing.assert_allclose(norms.numpy(), doc["block_norms"], rtol=1e-5)
    assert (out / "hessian_heatmap.png").stat().st_size > 0 and (out / "block_norms.png").is_file()


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    ck = _toy_checkpoint(tmp_path / "a")
    cases = [
        (["--checkpoint", str(tmp_path / "missing")], 2, "--checkpoint"),
        (["--checkpoint", str(ck), "--params", "conv9.weight"], 2, "--params"),
        (["--checkpoint", str(ck), "--batch", "0"], 2, "--batch"),
        (["--checkpoint", str(ck), "--max-memory-gb", "1e-12", "--params", "all"], 1, "--max-memory-gb"),
    ]
    for extra, code, word in cases:
        rc = main(["hessian", *extra, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip()
        assert rc == code and word in err and "\n" not in err and "Traceback" not in err


def test_cli_over_budget_with_probes_gives_estimate_only(tmp_path, capsys):
    ck = _toy_checkpoint(tmp_path / "a")
    out = tmp_path / "o"
    assert main(["hessian", "--checkpoint", str(ck), "--params", "all", "--probes", "3",
                 "--max-memory-gb", "1e-12", "--out", str(out)]) == 0
    doc = json.loads((out / "hessian.json").read_text())
    assert doc["method"] == "probes" and len(doc["block_norms"]) == 4
    assert not (out / "hessian.npz").exists() and (out / "block_norms.png").is_file()


def _standin_classifier(config):
    """A small branched conv classifier standing in for branchspec.models.resnet."""
    return Branched(lambda: nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
                                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 10)),
                    int(config["num_branches"]), seed=0)


def _cifar_folder(path, n=6):
    from branchspec.data.cifar import write_batch

    path.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_batch(path / name, rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), list(range(n)))
    write_batch(path / "batches.meta", None, None, meta_names=[f"c{i}" for i in range(10)])
    return path


def test_cli_classifier_adapter_with_standin(tmp_path, capsys, monkeypatch):
    from branchspec.models import registry
    from branchspec.checkpoint import prefixed, save_checkpoint

    monkeypatch.setitem(registry._BUILDERS, "classifier", _standin_classifier)
    model = _standin_classifier({"num_branches": 3})
    ck = tmp_path / "clf"
    save_checkpoint(ck, prefixed("model", model.state_dict()),
                    {"model": registry.model_spec("classifier", {"num_branches": 3})})
    out = tmp_path / "o"
    assert main(["hessian", "--checkpoint", str(ck), "--batch", "6", "--method", "blockwise", "--out", str(out)]) == 0
    doc = json.loads((out / "hessian.json").read_text())
    assert doc["param_names"] == ["0.weight", "0.bias"] and doc["num_params"] == 3 * 56
    assert "digits" in doc["data"] and "clamp" in doc["loss"]
    assert doc["column_check_max_rel_error"] < 1e-4 and doc["symmetry_error"] < 1e-4
    out2 = tmp_path / "o2"
    assert main(["hessian", "--checkpoint", str(ck), "--batch", "4", "--data", str(_cifar_folder(tmp_path / "c")),
                 "--out", str(out2)]) == 0
    assert "first 4 test images" in json.loads((out2 / "hessian.json").read_text())["data"]


def test_demo_quick_and_with_toy_checkpoints(tmp_path):
    from branchspec.commands.demo import run as demo_run
    from branchspec.experiments import demo, hessian

    class Args:
        out, quick, parts, shipped = str(tmp_path), True, "hessian", None

    assert demo_run(Args) == 0  # no toy part: the demo trains its own M = 10 toy network first
    sec = hessian.section(tmp_path / "hessian")
    assert sec.key == "hessian" and (tmp_path / sec.figures[0].path).is_file()
    doc = json.loads((tmp_path / "hessian" / "hessian.json").read_text())
    assert doc["label"] == "after training" and doc["compare"]["label"] == "initialisation"
    assert sec.numbers["loss after training"] < sec.numbers["loss at initialisation"]
    ck = tmp_path / "ck"
    _toy_checkpoint(ck / "m10_init", 0, 10), _toy_checkpoint(ck / "m10_trained", 1, 10)
    hessian.run(demo.hessian_config(tmp_path, True, ck), tmp_path / "second" / "hessian")
    sec2 = hessian.section(tmp_path / "second" / "hessian")
    assert "ck/m10_trained" in sec2.intro and sec2.numbers["branches M"] == 10



def test_blockwise_on_a_relu_conv_model_skips_a_zero_curvature_exactly():
    model = Branched(lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)),
                     2, seed=0).double()
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1])

    def ce(f, t):
        return nn.functional.cross_entropy(f, t, reduction="sum")

    sub = select_params(model, "first-layer")
    Hb, fac = blockwise_hessian(model, sub, x, labels, ce)
    ref = reference_hessian(model, sub, x, labels, ce)
    torch.testing.assert_close(Hb, ref, rtol=1e-9, atol=1e-12)
    for k in range(2):  # the curvature term of eq. 13 is certified zero: exact zeros
        assert within_branch_curvature(model, sub, x, fac.output_grad, k).abs().max().item() == 0.0
    gn = torch.cat([torch.cat([fac.offblock(k, l) for l in range(2)], 1) for k in range(2)], 0)
    torch.testing.assert_close(gn, ref, rtol=1e-9, atol=1e-12)
