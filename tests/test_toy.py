"""Toy experiments (§4.1): the vectorised sweep against plain per-trial autograd loops, IO, CLI, demo."""

import json

import numpy as np
import pytest
import torch

from branchspec import metrics
from branchspec.cli import main
from branchspec.toy import ToyConfig, initial_parameters, reference_train, toy_data, train_toy
from branchspec.toy.engine import _pair_rows


def _reference_all(run, steps, lr):
    """Every network of ``run`` retrained alone with autograd + SGD from the same init."""
    cfg = run.config
    out = []
    for g in range(len(run.net_m)):
        w0, b0 = (torch.from_numpy(a).double() for a in run.params(g, initial=True))
        out.append(reference_train(w0, b0, cfg.problem, steps, lr, cfg.negative_slope))
    return out


@pytest.mark.parametrize("problem", ["toy1", "toy2"])
def test_vectorised_trainer_matches_per_trial_autograd_loop(problem):
    # odd trial count and a ragged M list: rows with two networks, one network and empty slots
    cfg = ToyConfig(problem=problem, branches=(1, 2, 3, 6, 7), trials=3, steps=150, lr=0.05, dtype="float64",
                    trace_m=(2, 6), trace_trials=2, trace_every=25)
    run = train_toy(cfg)
    for g, (w, b, loss) in enumerate(_reference_all(run, 150, 0.05)):
        wv, bv = run.params(g)
        np.testing.assert_allclose(wv, w.numpy(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(bv, b.numpy(), rtol=0, atol=1e-10)
        assert run.loss[g] == pytest.approx(loss, abs=1e-10)
    # the recorded trajectory equals the reference stopped at the same steps
    x, _ = toy_data(problem, torch.float64)
    for key, tr in run.traces.items():
        m, t = (int(s) for s in key[1:].split("_t"))
        g = run.network(m, t)
        w0, b0 = (torch.from_numpy(a).double() for a in run.params(g, initial=True))
        for i, step in enumerate(run.trace_steps):
            if step in (0, 50, 150):
                w, b, _ = reference_train(w0, b0, problem, int(step), 0.05)
                v = torch.nn.functional.leaky_relu(w[:, None] * x + b[:, None], 0.01)  # (M, N)
                np.testing.assert_allclose(tr[i], v.numpy(), atol=1e-10)


def test_float32_engine_tracks_float64():
    base = dict(problem="toy1", branches=(2, 5, 10), trials=4, steps=300)
    r32 = train_toy(ToyConfig(**base))
    r64 = train_toy(ToyConfig(**base, dtype="float64"))
    np.testing.assert_allclose(r32.w, r64.w, atol=2e-4)
    np.testing.assert_allclose(r32.b, r64.b, atol=2e-4)


def test_row_packing_places_every_network_once():
    sizes = np.repeat(np.array([2, 3, 9, 30]), 5)
    first, second, L = _pair_rows(sizes)
    used = np.concatenate([first, second[second >= 0]])
    assert sorted(used.tolist()) == list(range(len(sizes)))
    pair = second >= 0
    assert np.all(sizes[first] + np.where(pair, sizes[np.maximum(second, 0)], 0) <= L)
    # a contiguous sweep with an even number of trials fills every slot
    sizes = np.repeat(np.arange(2, 31), 4)
    first, second, L = _pair_rows(sizes)
    assert len(first) * L == sizes.sum()


def test_counts_loss_and_success_match_metrics_per_network():
    cfg = ToyConfig(problem="toy2", branches=(2, 4, 9), trials=5, steps=400)
    run = train_toy(cfg)
    x, y = toy_data("toy2", torch.float64)
    for g in range(len(run.net_m)):
        w, b = (torch.from_numpy(a).double() for a in run.params(g))
        v = torch.nn.functional.leaky_relu(w[:, None] * x + b[:, None], cfg.negative_slope)  # (M, N)
        np.testing.assert_allclose(run.response(g), v.numpy(), atol=1e-5)
        F = metrics.response_matrix(torch.from_numpy(run.response(g)))
        act = metrics.activity(F, cfg.active_fraction)
        assert (run.active[g], run.silent[g]) == (act.active, act.silent)
        loss = float(((v.sum(0) - y) ** 2).sum())
        assert run.loss[g] == pytest.approx(loss, rel=1e-3, abs=1e-6)
        assert run.success[g] == (run.loss[g] < cfg.delta)


def test_init_of_a_network_does_not_depend_on_the_sweep():
    a = train_toy(ToyConfig(branches=(3, 10), trials=4, steps=1))
    b = train_toy(ToyConfig(branches=(10,), trials=6, steps=1))
    for t in range(4):
        np.testing.assert_array_equal(a.params(a.network(10, t), initial=True)[0],
                                      b.params(b.network(10, t), initial=True)[0])
    w, _ = initial_parameters(ToyConfig(branches=(2,), trials=3, init_scale=0.5))
    assert w.abs().max() <= 0.5


def test_diverging_network_is_frozen_and_spares_its_row_mate():
    # lr 2 makes the large networks blow up; the small ones (sharing their rows) must be untouched
    cfg = ToyConfig(problem="toy1", branches=(1, 2, 29, 30), trials=2, steps=60, lr=2.0, dtype="float64")
    run = train_toy(cfg)
    refs = _reference_all(run, 60, 2.0)
    diverged = ~np.isfinite(run.loss)
    assert diverged.any()
    for g, (w, b, loss) in enumerate(refs):
        if diverged[g]:
            assert not loss < 1e6  # the reference diverges too (huge, inf or nan)
        else:
            np.testing.assert_allclose(run.params(g)[0], w.numpy(), atol=1e-9)
    assert sum(d["diverged"] for d in run.per_m()) == int(diverged.sum())


def test_paper_trends_on_a_small_sweep():
    run = train_toy(ToyConfig(problem="toy1", branches=(2, 10, 20), trials=64, seed=1))
    pm = {d["m"]: d for d in run.per_m()}
    assert pm[2]["success_rate"] < pm[10]["success_rate"]
    assert pm[10]["success_rate"] >= 0.95 and pm[20]["success_rate"] >= 0.95


@pytest.mark.slow
def test_defaults_reproduce_the_paper():
    r1 = train_toy(ToyConfig(problem="toy1"))
    p1 = r1.per_m()
    assert min(d["success_rate"] for d in p1 if d["m"] >= 10) >= 0.98
    assert p1[0]["success_rate"] < p1[8]["success_rate"]
    p2 = train_toy(ToyConfig(problem="toy2")).per_m()
    act = [d["mean_active"] for d in p2 if d["m"] >= 10]
    assert max(act) - min(act) <= 1.5
    sil = [d["mean_silent"] for d in p2 if d["m"] >= 10]
    assert sil[-1] > sil[0] + 10


def test_cli_writes_results_figures_and_loadable_checkpoints(tmp_path, capsys):
    from branchspec.loading import load_model

    out = tmp_path / "toy"
    rc = main(["toy", "--problem", "toy1", "--branches", "2,10", "--trials", "12", "--steps", "300",
               "--out", str(out), "--save-model"])
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert [d["m"] for d in doc["per_m"]] == [2, 10]
    for d in doc["per_m"]:
        assert {"m", "success_rate", "mean_active", "mean_silent"} <= set(d)
        assert d["mean_active"] + d["mean_silent"] == pytest.approx(d["m"])
    assert doc["settings"]["steps"] == 300 and doc["settings"]["trials"] == 12
    covs = doc["covariance_examples"]
    assert covs["m"] == 10 and len(covs["matrices"]) == 10
    assert np.asarray(covs["matrices"][0]).shape == (10, 10)
    for name in ("toy1_dynamics.png", "toy1_success_cov.png", "toy1_activity.png", "traces.npz"):
        assert (out / name).is_file()
    # checkpoints: the model rebuilt from disk reproduces the saved response matrix F
    with np.load(out / "traces.npz") as z:
        F = z["F_m10"][0]
        w0 = z["w0_m10"]
    x, _ = toy_data("toy1")
    model, state = load_model(out / "models" / "m10_trained")
    assert state["model"]["kind"] == "toy" and state["step"] == 300
    v = model.branch_outputs(x[:, None])[..., 0]  # (M, N)
    np.testing.assert_allclose(v.detach().numpy(), F, atol=1e-6)
    init, _ = load_model(out / "models" / "m10_init")
    np.testing.assert_allclose([float(init.branches[k].weight.detach()) for k in range(10)], w0, atol=1e-7)


@pytest.mark.parametrize("argv, arg", [
    (["--branches", "0-5"], "--branches"),
    (["--branches", ""], "--branches"),
    (["--branches", "a-b"], "--branches"),
    (["--branches", "9-3"], "--branches"),
    (["--trials", "0"], "--trials"),
    (["--steps", "0"], "--steps"),
    (["--lr", "-1"], "--lr"),
    (["--out", "FILE"], "--out"),
    (["--out", "FILE/sub"], "--out"),
])
def test_cli_bad_input_is_one_line_naming_the_argument(tmp_path, capsys, argv, arg):
    f = tmp_path / "a_file"
    f.write_text("x")
    full = {"--branches": "2-3", "--trials": "2", "--out": str(tmp_path / "o")}
    for k, v in zip(argv[::2], argv[1::2]):
        full[k] = v.replace("FILE", str(f))
    args = ["toy"] + [s for kv in full.items() for s in kv] + ["--no-figures"]
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and arg in err and "Traceback" not in err


def test_demo_quick_section_and_checkpoints(tmp_path):
    from branchspec.experiments import demo, toy
    from branchspec.loading import load_model

    out = tmp_path / "toy"
    toy.run(demo.toy_config(quick=True), out)
    sec = toy.section(out)
    assert sec.key == "toy" and sec.numbers and sec.figures
    for fig in sec.figures:
        assert (tmp_path / fig.path).is_file() and fig.command.startswith("branchspec toy")
    ck = toy.checkpoints(out, 10)
    model, _ = load_model(ck["trained"])
    assert model.num_branches == 10
    load_model(ck["init"])
