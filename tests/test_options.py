"""Each trainer option is defined once (its config field) and the flags, --config files and recipes follow from it."""

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from branchspec import options
from branchspec.cli import build_parser, main
from branchspec.precision import resolve_precision
from branchspec.classifier.config import RUN_RECORD_KEYS, TrainConfig
from branchspec.gan.config import GanTrainConfig

ROOT = Path(__file__).resolve().parents[1]
TRAINERS = {"train-classifier": (TrainConfig, RUN_RECORD_KEYS), "train-gan": (GanTrainConfig, ())}
REQUIRED = {"train-classifier": ["--data", "digits", "--out", "x"], "train-gan": ["--out", "x"]}

# The flags each trainer had before they were generated, and the config they gave with nothing else given.
OLD_FLAGS = {
    "train-classifier": "--data --img-size --out --branches --epochs --width --subset --optimizer --lr --weight-decay "
                        "--weight-decay-mode --schedule --warmup-epochs --batch-size --engine --precision --device "
                        "--no-clamp --clamp-grad --init-from --head-init-scale --no-augment --flip --ema --tta --seed "
                        "--threads --resume --max-steps --save-every --stop-loss --sweep --sweep-procs --quiet",
    "train-gan": "--data --img-size --branches --steps --out --batch-size --lr --d-lr --r1 --r1-every --padding "
                 "--compile --ema --residual --sigma --base-width --max-width --num-down --engine --precision --init "
                 "--seed --holdout --same-domain --cls-weight --rec-weight --source-aware --resume --sample-every "
                 "--ckpt-every --keep-last --amp --device --threads --no-progress",
}
OLD_DEFAULTS = {
    "train-classifier": dict(num_branches=16, img_size=32, epochs=60, width=5.4, subset=None, optimizer="sgd", lr=None,
                             weight_decay=None, weight_decay_mode="coupled", schedule="cosine", warmup_epochs=1.0,
                             batch_size=128, engine="packed", device="cpu", clamp=True, clamp_grad="hard",
                             init_from=None, head_init_scale=None, augment=True, flip="random", ema=0.0, tta=False,
                             seed=0, save_every=0, stop_loss=None, precision=resolve_precision("auto", "cpu")),
    "train-gan": dict(data="embedded", img_size=32, num_branches=9, steps=1000, batch_size=8, lr=1e-4, d_lr=None, r1=1.0,
                      r1_every=1, padding="reflect", compile=False, ema=0.999, residual="gaussian", sigma=None,
                      base_width=32, max_width=128, num_down=None, engine="packed", init="he", seed=0, holdout=0,
                      same_domain=0.0, cls_weight=0.0, rec_weight=0.0, source_aware=False, sample_every=500,
                      ckpt_every=1000, keep_last=0, amp=False, device="auto", precision=resolve_precision("auto", "auto")),
}


def _sub(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _config(command: str, argv: list[str]):
    cls, ignore = TRAINERS[command]
    args = build_parser().parse_args([command] + argv)
    return cls(**options.values(args, cls, ignore))


@pytest.mark.parametrize("command", TRAINERS)
def test_every_field_has_one_flag_and_every_flag_one_field_or_none(command):
    cls, _ = TRAINERS[command]
    p = _sub(command)
    generated = options.flags(cls)
    assert sorted(generated) == sorted(f.name for f in dataclasses.fields(cls))
    assert len(set(generated.values())) == len(generated)  # no flag serves two fields
    run_control = next(g for g in p._action_groups if g.title == options.NOT_CONFIG)
    by_flag = {}
    for a in p._actions:
        for s in a.option_strings:
            assert s not in by_flag, f"{s} defined twice"
            by_flag[s] = a
        long = [s for s in a.option_strings if s.startswith("--")]
        if not long or long[0] in ("--help", "--config"):
            continue
        assert (long[0] in generated.values()) != (a in run_control._group_actions), long[0]
    assert set(generated.values()) <= set(by_flag)
    assert set(OLD_FLAGS[command].split()) <= set(by_flag)  # every flag kept its name


@pytest.mark.parametrize("command", TRAINERS)
def test_help_shows_the_dataclass_defaults_and_flags_carry_none(command):
    cls, _ = TRAINERS[command]
    p = _sub(command)
    by_dest = {a.dest: a for a in p._actions}
    for s in options.specs(cls):
        a = by_dest[s.dest]
        assert a.default is None, s.flag  # no second default: "not given" means the field's
        if s.type is not bool and s.default not in (None, dataclasses.MISSING) and not s.meta["default_help"]:
            assert a.help.endswith(f"(default {options.fmt(s.default)})"), (s.flag, a.help)
    text = p.format_help()
    assert options.DEPARTURES in text and options.NOT_CONFIG in text


@pytest.mark.parametrize("command", TRAINERS)
def test_nothing_given_is_the_old_command_line_default(command):
    cfg = _config(command, REQUIRED[command])
    assert {k: getattr(cfg, k) for k in OLD_DEFAULTS[command]} == OLD_DEFAULTS[command]
    assert cfg.departures() == []


def test_departures_are_their_own_group_and_listed():
    gan = _config("train-gan", ["--out", "x", "--source-aware", "--cls-weight", "3", "--d-lr", "4e-4"])
    assert gan.departures() == ["d_lr", "cls_weight", "source_aware"]
    p = _sub("train-gan")
    group = next(g for g in p._action_groups if g.title == options.DEPARTURES)
    assert {a.option_strings[0] for a in group._group_actions} == {
        "--d-lr", "--same-domain", "--cls-weight", "--rec-weight", "--source-aware"}
    cls = _config("train-classifier", REQUIRED["train-classifier"] + ["--no-clamp"])
    assert (cls.clamp, cls.departures()) == (False, ["clamp"])
    assert _config("train-classifier", REQUIRED["train-classifier"] + ["--clamp-grad", "pass-inward"]).departures() == [
        "clamp_grad"]


def test_amp_is_an_alias_of_bf16():
    assert _config("train-gan", ["--out", "x", "--amp"]).precision == "bf16"


def test_config_file_sets_defaults_and_flags_override(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('data = "digits"\nnum_branches = 4\nlr = 0.05\nclamp = false\nwarmup_epochs = 2\n')
    cfg = _config("train-classifier", ["--config", str(f), "--out", "x", "--branches", "8"])
    assert (cfg.data, cfg.num_branches, cfg.lr, cfg.clamp, cfg.warmup_epochs) == ("digits", 8, 0.05, False, 2.0)
    j = tmp_path / "r.json"
    j.write_text(json.dumps({"img_size": 16, "rec_weight": 10.0, "sigma": None}))
    gan = _config("train-gan", ["--config", str(j), "--out", "x"])
    assert (gan.img_size, gan.rec_weight, gan.sigma) == (16, 10.0, None)


@pytest.mark.parametrize("command, run", [("train-classifier", "cifar10-m16"), ("train-gan", "gan-catdog-64")])
def test_an_old_runs_config_json_rebuilds_its_config(command, run):
    path = ROOT / "checkpoints" / run / "config.json"
    saved = json.loads(path.read_text())
    saved = saved.get("train", saved)
    cfg = _config(command, ["--config", str(path), "--out", "x"])
    fields = [k for k in saved if k in cfg.__dataclass_fields__ and k != "out"]  # older runs: fewer fields
    assert len(fields) > 20 and {k: getattr(cfg, k) for k in fields} == {k: saved[k] for k in fields}


@pytest.mark.parametrize("text, needle", [
    ('num_branchez = 4\n', "unknown key 'num_branchez'"),
    ('branches = 4\n', "the key of --branches is num_branches"),
    ('num_branches = "4"\n', "num_branches must be an integer"),
    ('engine = "warp"\n', "engine must be one of"),
    ('num_branches = \n', "not valid TOML"),
])
def test_bad_config_files_are_one_line_errors_naming_file_and_key(tmp_path, capsys, text, needle):
    f = tmp_path / "bad.toml"
    f.write_text('data = "digits"\n' + text)
    assert main(["train-classifier", "--config", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(f) in err and needle in err, err
    assert not (tmp_path / "o").exists()


def test_a_bad_value_in_a_config_file_names_the_flag(tmp_path, capsys):
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"num_branches": 0}))
    assert main(["train-gan", "--config", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--branches: must be >= 1" in err
    assert main(["train-classifier", "--out", str(tmp_path / "o")]) == 2
    assert "--data is required" in capsys.readouterr().err


RECIPES = sorted((ROOT / "recipes").glob("*.toml"))


def test_the_recipes_are_there():
    names = {p.stem for p in RECIPES}
    assert {"cifar10-m16-stage1", "cifar10-m16-stage2", "cifar10-m16-sgd-kuangliu", "gan-catdog-64", "gan-utkface-64",
            "gan-catdog-64-paper-gaussian", "gan-catdog-64-paper-diffusion", "gan-cifar4-32"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_builds_its_config(recipe):
    command = "train-gan" if recipe.stem.startswith("gan-") else "train-classifier"
    assert f"branchspec {command} --config recipes/{recipe.name}" in recipe.read_text()  # its own command line
    cfg = _config(command, ["--config", str(recipe), "--out", "x"])
    if "-paper-" in recipe.stem:
        assert cfg.departures() == [] and cfg.residual == recipe.stem.rpartition("-")[2]
        best = _config(command, ["--config", str(recipe.with_name(recipe.stem.split("-paper-")[0] + ".toml")),
                                 "--out", "x"])
        assert dataclasses.replace(best, source_aware=False, cls_weight=0.0, rec_weight=0.0,
                                   residual=cfg.residual) == cfg  # the best recipe, departures off
    elif command == "train-gan":
        assert cfg.departures() == ["cls_weight", "rec_weight", "source_aware"]
    elif "kuangliu" in recipe.stem:  # the hard clamp collapses at lr 0.1: the one named departure
        assert cfg.departures() == ["clamp_grad"] and cfg.lr == 0.1 and cfg.num_branches == 16
    else:
        assert cfg.departures() == [] and cfg.num_branches == 16


def test_shipped_recipes_match_the_shipped_configs():
    for recipe, run in (("cifar10-m16-stage1", "cifar10-m16/pretrain"), ("cifar10-m16-stage2", "cifar10-m16"),
                        ("gan-catdog-64", "gan-catdog-64"), ("gan-utkface-64", "gan-utkface-64"),
                        ("gan-cifar4-32", "gan-cifar4-run9d"), ("cifar10-sweep-criterion", "cifar10-sweep-criterion")):
        command = "train-gan" if recipe.startswith("gan-") else "train-classifier"
        cfg = dataclasses.asdict(_config(command, ["--config", str(ROOT / "recipes" / f"{recipe}.toml"), "--out", "x"]))
        saved = json.loads(next((ROOT / "checkpoints" / run).glob("config*.json")).read_text())
        saved = saved.get("train", saved)
        differ = {k for k in cfg if k in saved and saved[k] != cfg[k]} - {"data", "out", "init_from", "steps",
                                                                           "num_branches"}  # a sweep's: one M
        assert differ == set(), (recipe, {k: (saved[k], cfg[k]) for k in differ})


def test_runs_record_their_departures_and_their_config_json_reads_back(tmp_path):
    run = tmp_path / "c"
    assert main(["train-classifier", "--data", "digits", "--out", str(run), "--branches", "2", "--width", "1",
                 "--subset", "32", "--batch-size", "16", "--epochs", "1", "--engine", "loop", "--quiet",
                 "--no-clamp"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["departures"] == ["clamp"]
    again = _config("train-classifier", ["--config", str(run / "config.json"), "--out", str(run)])
    assert dataclasses.asdict(again) == {k: saved[k] for k in again.__dataclass_fields__}
    gan = tmp_path / "g"
    assert main(["train-gan", "--out", str(gan), "--img-size", "16", "--branches", "2", "--steps", "1", "--batch-size",
                 "2", "--base-width", "4", "--max-width", "8", "--style-dim", "4", "--d-base-width", "4",
                 "--d-max-width", "8", "--n-per-domain", "2", "--engine", "loop", "--no-progress", "--ckpt-every", "0",
                 "--sample-every", "0", "--rec-weight", "1"]) == 0
    saved = json.loads((gan / "config.json").read_text())
    assert saved["departures"] == ["rec_weight"]
    assert dataclasses.asdict(_config("train-gan", ["--config", str(gan / "config.json"), "--out", "x"])) == saved["train"]


def test_options_page_is_generated_from_the_configs():
    """docs/options.md is what scripts/build_options_doc.py writes from the configs today (no fourth copy)."""
    import subprocess
    import sys

    rc = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_options_doc.py"), "--check"]).returncode
    assert rc == 0, "docs/options.md is stale: run python scripts/build_options_doc.py"
