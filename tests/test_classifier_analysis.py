"""Classifier analysis functions against explicit loops (STYLE habit 4), and the analysis command."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import branchspec.classifier.analysis as A
from branchspec.classifier.analysis_run import collect_outputs
from branchspec.cli import main
from branchspec.data.imageset import ImageSet
from branchspec.models.resnet import ClassifierConfig, build_classifier


@pytest.fixture
def outputs():
    g = torch.Generator().manual_seed(0)
    V = torch.randn(5, 40, 4, generator=g)  # (M, N, C)
    V[3] *= 0.01  # a nearly silent branch
    labels = torch.randint(0, 4, (40,), generator=g)
    return V, labels


def test_class_means_loop(outputs):
    V, labels = outputs
    cm = A.class_means(V, labels, 4)
    for k in range(5):
        for c in range(4):
            rows = [V[k, j] for j in range(40) if labels[j] == c]
            torch.testing.assert_close(cm[k, c], torch.stack(rows).mean(0))


def test_confidence_loop_and_sum_is_margin(outputs):
    V, labels = outputs
    conf = A.branch_confidence(V, labels)
    for k in range(5):
        for j in range(40):
            y = int(labels[j])
            others = [float(V[k, j, c]) for c in range(4) if c != y]
            assert conf[k, j].item() == pytest.approx(float(V[k, j, y]) - sum(others) / 3, abs=1e-5)
    f = V.sum(0)
    margin = torch.stack([f[j, labels[j]] - (f[j].sum() - f[j, labels[j]]) / 3 for j in range(40)])
    torch.testing.assert_close(conf.sum(0), margin, atol=1e-5, rtol=0)


def test_covariance_and_activity_loop(outputs):
    V, labels = outputs
    s = A.covariance_summary(V)
    for i in range(5):
        for k in range(5):
            ref = sum(float(V[i, j] @ V[k, j]) for j in range(40))
            assert s["covariance"][i][k] == pytest.approx(ref, rel=1e-4)
    norms = [float(V[k].pow(2).sum().sqrt()) for k in range(5)]
    active = [k for k in range(5) if norms[k] >= 0.1 * max(norms)]
    assert s["active_branches"] == active and s["silent_branches"] == [3]
    assert s["num_active"] + s["num_silent"] == 5
    centred = [float((V[k] - V[k].mean(0)).pow(2).sum().sqrt()) for k in range(5)]
    assert s["centred_branch_norms"] == pytest.approx(centred, rel=1e-4)
    assert s["num_silent_centred"] == sum(c < 0.1 * max(centred) for c in centred)


def test_a_constant_branch_is_silent_only_with_its_mean_removed():
    """A branch whose weights before the last layer are gone outputs its bias for every input: the paper's
    uncentred norm (Fig. 4) counts that constant as response, the centred count as silence."""
    V = torch.randn(3, 50, 4, generator=torch.Generator().manual_seed(0))
    V[2] = torch.tensor([0.9, -0.5, 0.3, 0.7])  # one constant vector, well above 10 % of the others
    s = A.covariance_summary(V)
    assert s["num_silent"] == 0 and s["num_silent_centred"] == 1 and s["centred_branch_norms"][2] < 1e-5


def test_ablation_loop_and_matches_model_silenced():
    torch.manual_seed(0)
    model = build_classifier(ClassifierConfig(num_branches=3, width=1, engine="loop", seed=0))
    imgs = np.random.RandomState(0).randint(0, 256, (24, 16, 16, 3)).astype(np.uint8)
    data = ImageSet(imgs, np.arange(24) % 10, [str(i) for i in range(10)])
    V, labels = collect_outputs(model, data, batch_size=10)
    assert V.shape == (3, 24, 10)
    ab = A.ablation(V, labels, clamp=True)
    x, y = next(iter(data.batches(24, augment=False)))
    with torch.no_grad():
        assert ab["full"] == pytest.approx(float((model(x).clamp(-1, 1).argmax(1) == y).float().mean()))
        for k in range(3):
            with model.silenced(k):
                acc = float((model(x).clamp(-1, 1).argmax(1) == y).float().mean())
            assert ab["without_branch"][k] == pytest.approx(acc)
        for top, acc_top in ab["keep_top"].items():
            silence = [k for k in range(3) if k not in ab["ranking"][:top]]
            with model.silenced(silence):
                acc = float((model(x).clamp(-1, 1).argmax(1) == y).float().mean())
            assert acc_top == pytest.approx(acc)
    norms = [float(V[k].norm()) for k in range(3)]
    assert ab["ranking"] == sorted(range(3), key=lambda k: -norms[k])


def test_top_confident_and_pairs_loop(outputs):
    V, labels = outputs
    conf = A.branch_confidence(V, labels)
    idx = A.top_confident(V, labels, 1, 2, 0.5)
    members = [j for j in range(40) if labels[j] == 2]
    ref = sorted(members, key=lambda j: -float(conf[1, j]))[: max(1, round(0.5 * len(members)))]
    assert idx == ref
    pairs = A.informative_pairs(V, labels, 4, branches=2, classes=1)
    per = [[np.mean([float(conf[k, j]) for j in range(40) if labels[j] == c]) for c in range(4)] for k in range(5)]
    best = sorted(range(5), key=lambda k: -max(per[k]))[:2]
    assert pairs == [(k, int(np.argmax(per[k]))) for k in best]
    picks = A.sample_per_class(labels, 3, seed=1)
    assert all(sum(1 for j in picks if labels[j] == c) == min(3, int((labels == c).sum())) for c in range(4))


def test_analyze_command_writes_json_and_figures(tmp_path, capsys, drawn):
    run = tmp_path / "r"
    assert main(["train-classifier", "--data", "digits", "--out", str(run), "--branches", "3", "--width", "1",
                 "--subset", "64", "--batch-size", "32", "--epochs", "1", "--engine", "loop", "--quiet"]) == 0
    out = tmp_path / "a"
    drawn.clear()
    assert main(["analyze-classifier", "--checkpoint", str(run / "last.json"), "--data", "digits",
                 "--out", str(out), "--per-class", "3", "--hessian-samples", "0"]) == 0
    res = json.loads((out / "analysis.json").read_text())
    for key in ("accuracy", "active_branches", "silent_branches", "covariance", "ablation", "class_means", "galleries"):
        assert key in res
    assert len(res["covariance"]) == 3 and np.asarray(res["class_means"]).shape == (3, 10, 10)
    assert len(res["confidence_samples"]["indices"]) == 30
    with np.load(out / "analysis.npz") as z:
        assert z["outputs"].shape[0] == 3
    names = ("fig6_class_means.png", "fig5_covariance.png", "fig7_confidence.png", "fig8_galleries.png", "ablation.png")
    assert len(drawn) == len(names)  # draw_analysis's order; no Hessian figure with --hessian-samples 0
    for name, fig in zip(names, drawn):
        fig.check_png(out / name)
    cm = np.asarray(res["class_means"])
    shown = [im for ims in drawn[0].images for im in ims]
    assert any(np.allclose(im, cm[0]) for im in shown) and any(np.allclose(im, cm[2]) for im in shown)  # Fig. 6
    np.testing.assert_allclose(drawn[1].images[0][0], res["covariance"])  # Fig. 5 panel 2
    rc = main(["analyze-classifier", "--checkpoint", str(run / "last.json"), "--data", "digits", "--out", str(out),
               "--pairs", "9:1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--pairs" in err and "out of range" in err and len(err.splitlines()) == 1


def test_sweep_records_activity_per_m(tmp_path, drawn):
    from branchspec.classifier.analysis_run import run_sweep
    from branchspec.classifier.train import TrainConfig

    cfg = TrainConfig(data="digits", out=str(tmp_path), width=1, epochs=1, batch_size=32, subset=32, engine="loop")
    res = run_sweep(cfg, [1, 2], tmp_path, progress=False, log=lambda s: None)
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["M"] == [1, 2] and res["M"] == [1, 2]
    assert [a + s for a, s in zip(saved["active"], saved["silent"])] == [1, 2]
    from branchspec.figures.classifier import draw_sweep

    drawn.clear()
    draw_sweep(tmp_path / "sweep.json", tmp_path / "sweep.png")  # figures are drawn from the saved results
    (fig,) = drawn
    fig.check_png(tmp_path / "sweep.png")
    (m_active, active), (_, silent) = fig.lines[0]
    assert m_active.tolist() == [1, 2] and active.tolist() == saved["active"] and silent.tolist() == saved["silent"]
    for ims, cov in zip(fig.images[1:], saved["covariance"]):  # one covariance panel per M
        np.testing.assert_allclose(ims[0], cov)
    from branchspec.figures.classifier import draw_sweep_outputs, sweep_outputs

    drawn.clear()
    draw_sweep_outputs(tmp_path / "sweep.json", tmp_path / "sweep-outputs.png")  # Fig. 17 left
    (fig,) = drawn
    fig.check_png(tmp_path / "sweep-outputs.png")
    rows = sweep_outputs(tmp_path / "sweep.json")
    for r, ims, cm, silent in zip(rows, fig.images, saved["class_means"], saved["silent"]):
        cm = np.asarray(cm)
        true_class = cm[:, np.arange(cm.shape[1]), np.arange(cm.shape[1])]
        np.testing.assert_allclose(ims[0], true_class[r["order"]])  # every branch, strongest first
        assert r["silent"] == silent and r["ratio"][0] == 1.0 and np.all(np.diff(r["ratio"]) <= 0)
    again = run_sweep(cfg, [1, 2], tmp_path, progress=False, log=lambda s: None)  # finished runs are reused
    assert again["test_acc"] == saved["test_acc"]


def test_sweep_to_a_train_loss_criterion(tmp_path):
    """stop_loss: each M stops after the first epoch whose train loss (metrics.csv) is within stop_loss of the
    floor; a criterion no epoch meets runs the whole schedule; sweep.json records, per M, the epochs trained and
    the eval-mode loss on the images it trained on (checked against train_split_loss); reached runs are reused."""
    import csv

    from branchspec.classifier.analysis_run import run_sweep, train_split_loss
    from branchspec.data.imageset import load_source
    from branchspec.loading import load_model
    from branchspec.classifier.train import TrainConfig
    from branchspec.losses import soft_target_floor

    floor = soft_target_floor(10)
    base = TrainConfig(data="digits", out=str(tmp_path), width=1, epochs=3, batch_size=32, subset=64, engine="loop",
                       schedule="constant")
    for delta, want in ((1.0, 1), (1e-6, 3)):  # 2.30 - 1.89 < 1.0 from the first epoch; 1e-6 is never reached
        out = tmp_path / f"d{delta}"
        res = run_sweep(replace(base, stop_loss=delta), [1, 2], out, progress=False, log=lambda s: None)
        assert res["epochs"] == [want, want] and res["stop_loss"] == delta
        assert res["loss_floor"] == pytest.approx(floor)
        for i, m in enumerate((1, 2)):
            rows = list(csv.DictReader(open(out / f"M{m}" / "metrics.csv")))
            assert len(rows) == want
            assert [float(r["train_loss"]) <= floor + delta for r in rows] == [False] * (want - 1) + [delta == 1.0]
            model, state = load_model(out / f"M{m}" / "last")
            fit = train_split_loss(model, state, "digits", True, subset=64)
            assert fit["images"] == 64 and res["train_split_loss"][i] == pytest.approx(fit["loss"])
        again = run_sweep(replace(base, stop_loss=delta), [1, 2], out, progress=False, log=lambda s: None)
        assert again["epochs"] == [want, want]  # finished (criterion met or schedule done): reused, not trained on
    whole = len(load_source("digits", train=True))
    assert whole > 64 and train_split_loss(model, state, "digits", True)["images"] == whole  # no subset: all of it


def test_sweep_on_two_processes_matches_one(tmp_path):
    """--sweep-procs 2 trains the runs in worker processes; every run seeds itself, so the results equal procs=1."""
    from branchspec.classifier.analysis_run import run_sweep
    from branchspec.classifier.train import TrainConfig

    cfg = TrainConfig(data="digits", out=str(tmp_path), width=1, epochs=1, batch_size=32, subset=64, engine="loop")
    one = run_sweep(cfg, [1, 2], tmp_path / "one", progress=False, log=lambda s: None, threads=1)
    two = run_sweep(cfg, [1, 2], tmp_path / "two", progress=False, log=lambda s: None, procs=2, threads=1)
    assert two["M"] == [1, 2]
    assert two["test_acc"] == one["test_acc"] and two["covariance"] == one["covariance"]
    from branchspec.checkpoint import checkpoint_state

    for m in (1, 2):  # both runs were really trained to the end in the workers
        assert checkpoint_state(tmp_path / "two" / f"M{m}" / "last")["epoch"] == 1


def test_shipped_figures_join_the_section(tmp_path):
    """A shipped model's saved figures are copied into the report folder and shown with their commands."""
    from PIL import Image

    from branchspec.errors import ConfigError
    from branchspec.experiments import classifier

    ship = tmp_path / "ship"
    (ship / "analysis").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(ship / "analysis" / "fig6.png")
    (ship / "analysis" / "analysis.json").write_text(json.dumps({
        "accuracy": 0.855, "num_active": 16, "num_silent": 0, "mean_abs_offdiag_correlation": 0.2,
        "train_split": {"images": 50000, "loss": 1.9516, "accuracy": 0.9118, "loss_floor": 1.8949, "above_floor": 0.0567}}))
    (ship / "shipped.json").write_text(json.dumps({
        "title": "CIFAR-10, M = 16", "numbers": {"test accuracy": 0.8},
        "figures": [{"file": "analysis/fig6.png", "caption": "class means", "command": "branchspec analyze-classifier X"}],
        "notes": ["trained elsewhere"]}))
    out = tmp_path / "out"
    classifier.run(classifier.Config(shipped=str(ship)), out)
    sec = classifier.section(out)
    assert (out / "shipped" / "ship" / "fig6.png").read_bytes() == (ship / "analysis" / "fig6.png").read_bytes()
    fig = [f for f in sec.figures if f.path.endswith("fig6.png")][0]
    assert not Path(fig.path).is_absolute() and fig.command == "branchspec analyze-classifier X"
    assert sec.numbers["CIFAR-10, M = 16: test accuracy"] == 0.8
    assert "CIFAR-10, M = 16: trained elsewhere" in sec.notes
    assert sec.numbers["CIFAR-10, M = 16: active / silent branches"] == "16 / 0"  # read from analysis.json
    assert sec.numbers["CIFAR-10, M = 16: training-split loss (un-augmented) vs floor"] == (
        "1.9516 vs 1.8949 (+0.0567); train accuracy 0.9118")
    # a second shipped model joins the same section under its own title and numbers
    other = tmp_path / "other"
    shutil.copytree(ship, other)
    doc = json.loads((other / "shipped.json").read_text())
    (other / "shipped.json").write_text(json.dumps({**doc, "title": "CIFAR-10, SGD"}))
    (other / "analysis" / "analysis.json").write_text(json.dumps({
        "accuracy": 0.663, "num_active": 15, "num_silent": 1, "mean_abs_offdiag_correlation": 0.13}))
    classifier.run(classifier.Config(shipped=(str(ship), str(other))), tmp_path / "two")
    sec2 = classifier.section(tmp_path / "two")
    assert sec2.numbers["CIFAR-10, M = 16: active / silent branches"] == "16 / 0"
    assert sec2.numbers["CIFAR-10, SGD: active / silent branches"] == "15 / 1"
    assert sorted(f.caption.split(":")[0] for f in sec2.figures if f.path.endswith("fig6.png")) == [
        "CIFAR-10, M = 16", "CIFAR-10, SGD"]
    with pytest.raises(ConfigError, match="share a name"):
        classifier.Config(shipped=(str(ship), str(tmp_path / "x" / "ship")))
    (ship / "analysis" / "fig6.png").unlink()
    with pytest.raises(ConfigError, match="missing"):
        classifier.run(classifier.Config(shipped=str(ship)), tmp_path / "out2")


def test_demo_shipped_option(tmp_path, capsys):
    """demo --shipped DIR shows that folder's model, 'none' none; a folder without shipped.json is a one-line error."""
    from branchspec.cli import main
    from branchspec.experiments import demo

    def shipped_of(**kw):
        [step] = demo.plan(tmp_path / "out", parts=("classifier",), **kw)
        return step.config.shipped

    assert shipped_of(shipped=str(tmp_path / "x")) == (str(tmp_path / "x"),)
    assert shipped_of(shipped="") == ()
    assert shipped_of(quick=True) == ()
    assert main(["demo", "--out", str(tmp_path / "o"), "--parts", "classifier", "--shipped", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--shipped" in err and "shipped.json" in err and err.count("\n") == 1


def test_train_split_loss_matches_a_loop(tmp_path, capsys):
    """``analyze-classifier --train-split``: the §6 loss on the whole un-augmented training split, by hand."""
    from branchspec.classifier.analysis_run import train_split_loss
    from branchspec.data.imageset import split_for
    from branchspec.loading import load_model

    run = tmp_path / "r"
    assert main(["train-classifier", "--data", "digits", "--out", str(run), "--branches", "2", "--width", "1",
                 "--subset", "64", "--batch-size", "32", "--epochs", "1", "--engine", "loop", "--quiet"]) == 0
    model, state = load_model(run / "last")
    res = train_split_loss(model, state, "digits", clamp=True)
    train = split_for(state, "digits", train=True)
    model.eval()
    total, correct, n, saturated, clamped = 0.0, 0, 0, 0, 0
    with torch.no_grad():
        for x, y in train.batches(97, augment=False, prefetch=False):
            for i in range(len(y)):  # one sample at a time: CE(softmax(±1 vector), softmax(clamp f))
                f = model(x[i:i + 1])[0].clamp(-1, 1)
                t = -torch.ones(10)
                t[y[i]] = 1.0
                p = torch.softmax(t, 0)
                total += float(-(p * torch.log_softmax(f, 0)).sum())
                correct += int(f.argmax() == y[i])
                raw = model(x[i:i + 1])[0]
                saturated += int(all(abs(float(v)) > 1 for v in raw))
                clamped += sum(int(abs(float(v)) > 1) for v in raw)
                n += 1
    assert res["images"] == n == len(train)
    assert res["loss"] == pytest.approx(total / n, abs=1e-5) and res["accuracy"] == pytest.approx(correct / n)
    assert res["saturated_samples"] == pytest.approx(saturated / n)
    assert res["clamped_logits"] == pytest.approx(clamped / (10 * n))
    assert res["loss_floor"] == pytest.approx(1.8949, abs=1e-4)
    assert res["above_floor"] == pytest.approx(res["loss"] - res["loss_floor"]) and res["above_floor"] > 0
    out = tmp_path / "a"
    assert main(["analyze-classifier", "--checkpoint", str(run / "last"), "--data", "digits", "--out", str(out),
                 "--hessian-samples", "0", "--train-split"]) == 0
    assert "training split" in capsys.readouterr().out
    assert json.loads((out / "analysis.json").read_text())["train_split"]["loss"] == pytest.approx(res["loss"])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sweep_workers_exit_when_the_parent_is_killed(tmp_path):
    """A sweep's spawn workers leave once their parent is killed (SIGKILL reaches no child), instead of training
    on into the run folders (found when a restarted sweep met the orphans of a killed one)."""
    import signal
    import subprocess
    import sys
    import time

    script = (
        "from branchspec.classifier.train import TrainConfig\n"
        "from branchspec.classifier.sweep import train_runs\n"
        f"cfgs = [TrainConfig(data='digits', out=r'{tmp_path}/M%d' % m, num_branches=m, width=1, epochs=10000, "
        "batch_size=32, subset=64, engine='loop') for m in (1, 2)]\n"
        "train_runs(cfgs, procs=2, threads=1, progress=False, log=lambda s: None)\n")
    parent = subprocess.Popen([sys.executable, "-c", script])

    def children():
        kids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmd = (stat.parent / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == parent.pid and b"spawn_main" in cmd:
                kids.append(int(stat.parent.name))
        return kids

    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (len(children()) >= 2 and (tmp_path / "M1" / "config.json").exists()):
            time.sleep(0.5)
        workers = children()
        assert len(workers) >= 2, "the sweep's workers did not start"
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    def running(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # not a zombie
        except OSError:
            return False

    deadline = time.time() + 30
    alive = workers
    while alive and time.time() < deadline:
        time.sleep(0.5)
        alive = [p for p in workers if running(p)]
    assert not alive, f"workers {alive} still running after their parent was killed"


def test_accuracy_clamp_is_explicit():
    V = torch.tensor([[[3.0, 2.0], [1.5, 4.0], [2.0, 1.2]]])  # (M=1, N=3, C=2): every logit > 1
    labels = torch.tensor([0, 1, 0])
    assert A.accuracy(V, labels, clamp=False) == 1.0  # argmax of the plain sum (a cross-entropy model)
    assert A.accuracy(V, labels, clamp=True) == pytest.approx(2 / 3)  # clamped ties go to class 0
    with pytest.raises(TypeError):
        A.accuracy(V, labels)
    from branchspec import metrics
    assert A.branch_confidence is metrics.branch_confidence
