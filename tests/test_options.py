"""Each option is defined once (its config field) and the flags, --config files and recipes follow from it."""

import argparse
import dataclasses
import importlib
import json
import pkgutil
import tomllib
from pathlib import Path

import pytest

import branchspec
from branchspec import options
from branchspec.cli import build_parser, main
from branchspec.precision import resolve_precision
from branchspec.classifier.config import RUN_RECORD_KEYS, TrainConfig
from branchspec.experiments import apps, demo, gan, hessian, toy
from branchspec.experiments.classifier import Analysis
from branchspec.gan.config import GanTrainConfig

ROOT = Path(__file__).resolve().parents[1]
TRAINERS = {"train-classifier": (TrainConfig, RUN_RECORD_KEYS), "train-gan": (GanTrainConfig, ())}
# every command whose options are the fields of a config (the others: report, export, a path or two of run control)
CONFIGS = {**{k: v[0] for k, v in TRAINERS.items()}, "hessian": hessian.Config, "toy": toy.Config,
           "analyze-classifier": Analysis, "decompose": gan.Decompose, "segment": apps.Segment,
           "manipulate": apps.Manipulate, "demo": demo.Demo}
REQUIRED = {"train-classifier": ["--data", "digits", "--out", "x"], "train-gan": ["--out", "x"],
            "hessian": ["--checkpoint", "c", "--out", "x"], "toy": ["--out", "x"],
            "decompose": ["--checkpoint", "c", "a.png", "--out", "x"], "segment": ["d.npz", "--out", "x"],
            "manipulate": ["d.npz", "--out", "x"], "demo": [],
            "analyze-classifier": ["--checkpoint", "c", "--data", "digits", "--out", "x"]}

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
    "hessian": "--checkpoint --params --batch --out --compare-checkpoint --probes --max-memory-gb --method --data --seed",
    "toy": "--problem --branches --trials --out --steps --lr --seed --save-model --no-figures",
    "decompose": "--checkpoint --out --domain --img-size --batch-size --grid-rows --held-out --judge --judge-data "
                 "--judge-max --face-regions --device",
    "segment": "--out --locator --target --truth --eyes --mu --iterations --on --energy-sigma",
    "manipulate": "--out --component --alphas --subsets --gains --no-gif",
    "demo": "--out --quick --shipped --parts",
    "analyze-classifier": "--checkpoint --data --out --per-class --top --pairs --hessian-samples --train-split --threads",
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
    "hessian": dict(compare_checkpoint="", params="first-layer", batch=128, probes=0, max_memory_gb=2.0, method="auto",
                    data="", seed=0),
    "toy": dict(problems=("toy1",), branches=tuple(range(2, 31)), trials=1000, lr=0.03, seed=0, save_models=(),
                figures=True, steps=None),  # steps None: the problem's (the old command's 0)
    "decompose": dict(images=("a.png",), held_out=False, domain=None, img_size=None, batch_size=8, grid_rows=8, judge="",
                      judge_data="", judge_max=400, face_regions=False, device="cpu"),
    "segment": dict(locators=None, target=None, truth="", eyes=None, mu=0.1, iterations=300, on="value",
                    energy_sigma=0.0),
    "manipulate": dict(components=None, alphas=(-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0), subsets=(), gains=None,
                       gif="all"),
    "demo": dict(quick=False, parts=("toy", "hessian", "classifier", "decomposition", "apps"), shipped=None),
    "analyze-classifier": dict(checkpoint="c", data="digits", per_class=20, top=7.0, pairs=None, hessian_samples=256,
                               train_split=False),
}


def _sub(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _config(command: str, argv: list[str]):
    cls = CONFIGS[command]
    args = build_parser().parse_args([command] + argv)
    return cls(**options.values(args, cls, TRAINERS.get(command, (cls, ()))[1]))


@pytest.mark.parametrize("command", CONFIGS)
def test_every_field_has_one_flag_and_every_flag_one_field_or_none(command):
    cls = CONFIGS[command]
    p = _sub(command)
    generated = options.flags(cls)
    api = {f.name for f in dataclasses.fields(cls) if f.metadata.get("api_only")}
    assert sorted(generated) == sorted(f.name for f in dataclasses.fields(cls) if f.name not in api)
    assert len(set(generated.values())) == len(generated)  # no flag serves two fields
    run_control = next(g for g in p._action_groups if g.title == options.NOT_CONFIG)
    by_flag = {}
    for a in p._actions:
        for s in a.option_strings or [a.metavar]:
            assert s not in by_flag, f"{s} defined twice"
            by_flag[s] = a
        long = [s for s in a.option_strings if s.startswith("--")]
        if not long or long[0] in ("--help", "--config"):
            continue
        assert (long[0] in generated.values()) != (a in run_control._group_actions), long[0]
    assert set(generated.values()) <= set(by_flag)
    assert set(OLD_FLAGS[command].split()) <= set(by_flag)  # every flag kept its name


# one non-default setting per command: (field, value in a --config file, the same field's flag and another value)
FILE_SETTINGS = {"train-classifier": ("epochs", 7, "9"), "train-gan": ("steps", 7, "9"), "hessian": ("probes", 3, "5"),
                 "toy": ("trials", 7, "9"), "analyze-classifier": ("per_class", 3, "5"), "decompose": ("batch_size", 3, "5"),
                 "segment": ("iterations", 7, "9"), "manipulate": ("components", [2], "3"), "demo": ("quick", True, None)}


@pytest.mark.parametrize("command", CONFIGS)
def test_every_config_command_reads_a_config_file_under_its_flags(command, tmp_path):
    """--config FILE works for every command with a config: the file replaces the defaults, a flag the file."""
    field, in_file, flag_value = FILE_SETTINGS[command]
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(f"{field} = {json.dumps(in_file)}\n")
    read = getattr(_config(command, REQUIRED[command] + ["--config", str(cfg_file)]), field)
    assert read == (tuple(in_file) if isinstance(in_file, list) else in_file)
    if flag_value is not None:
        flag = options.flags(CONFIGS[command])[field]
        given = _config(command, REQUIRED[command] + ["--config", str(cfg_file), flag, flag_value])
        assert str(getattr(given, field)).strip("(),") == flag_value
    cfg_file.write_text("no_such_field = 1\n")
    with pytest.raises(options.UsageError, match="no_such_field"):
        _config(command, REQUIRED[command] + ["--config", str(cfg_file)])


@pytest.mark.parametrize("command", ["analyze-classifier", "decompose", "hessian"])
def test_a_required_option_may_come_from_the_config_file(command, tmp_path):
    """--checkpoint is required: on the command line or in the --config file; neither is a one-line error."""
    argv = REQUIRED[command]
    i = argv.index("--checkpoint")
    rest = argv[:i] + argv[i + 2:]
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('checkpoint = "c"\n')
    assert _config(command, rest + ["--config", str(cfg_file)]) == _config(command, argv)
    with pytest.raises(options.UsageError, match="--checkpoint is required"):
        _config(command, rest)


@pytest.mark.parametrize("command", sorted(set(build_parser()._subparsers._group_actions[0].choices) - set(CONFIGS)))
def test_a_command_without_a_config_has_run_control_flags_only(command):
    p = _sub(command)
    run_control = next(g for g in p._action_groups if g.title == options.NOT_CONFIG)
    assert [a for a in p._actions if a.option_strings and "--help" not in a.option_strings] == run_control._group_actions


@pytest.mark.parametrize("command", CONFIGS)
def test_help_shows_the_dataclass_defaults_and_flags_carry_none(command):
    cls = CONFIGS[command]
    p = _sub(command)
    by_dest = {a.dest: a for a in p._actions}
    for s in options.specs(cls):
        a = by_dest[s.dest]
        assert a.default is None, s.flag  # no second default: "not given" means the field's
        if options.default_text(s):
            assert a.help.endswith(options.default_text(s).replace("%", "%%")), (s.flag, a.help)
        if (not s.switch and not s.positional and s.default not in (None, "", (), dataclasses.MISSING)
                and not s.meta["default_help"] and not s.meta["required"]):
            assert a.help.endswith(f"(default {options.fmt(s.default)})"), (s.flag, a.help)
    text = p.format_help()
    assert options.NOT_CONFIG in text
    if command in TRAINERS:
        assert options.DEPARTURES in text


@pytest.mark.parametrize("command", CONFIGS)
def test_nothing_given_is_the_old_command_line_default(command):
    cfg = _config(command, REQUIRED[command])
    assert {k: getattr(cfg, k) for k in OLD_DEFAULTS[command]} == OLD_DEFAULTS[command]
    assert options.departures(cfg) == []


@pytest.mark.parametrize("cls, field", [(toy.Config, "branches"), (toy.Config, "problems"), (apps.Manipulate, "alphas"),
                                        (demo.Demo, "parts")])
def test_a_default_written_as_text_is_the_default(cls, field):
    """``--help`` states these defaults as the text a user would type; parsed, that text is the field's default."""
    s = next(s for s in options.specs(cls) if s.field == field)
    assert s.meta["parse"](s.meta["default_help"]) == s.default


def _config_defaults() -> dict[str, list[tuple[str, object]]]:
    """Field name -> [(Class.field, default)] over every dataclass in branchspec (its configs)."""
    out: dict[str, list[tuple[str, object]]] = {}
    for m in pkgutil.walk_packages(branchspec.__path__, "branchspec."):
        if m.name.endswith("__main__"):
            continue
        mod = importlib.import_module(m.name)
        for obj in vars(mod).values():
            if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == mod.__name__:
                for f in dataclasses.fields(obj):
                    if f.default is not dataclasses.MISSING:
                        out.setdefault(f.name, []).append((f"{obj.__name__}.{f.name}", f.default))
    return out


def _second_definitions(parser: argparse.ArgumentParser, generated: set[str], defaults) -> list[str]:
    """Hand-written flags of ``parser`` (not in ``generated``) whose default is a same-named config field's."""
    found = []
    for a in parser._actions:
        if not a.option_strings or a.dest in generated or a.dest in ("help", "config"):
            continue
        if a.default is None or a.default is False or a.default is argparse.SUPPRESS:  # a switch off is no value
            continue
        for where, default in defaults.get(a.dest, ()):
            if type(default) is type(a.default) and default == a.default:
                found.append(f"{a.option_strings[0]} default {a.default!r} is {where}'s too: generate the flag")
    return found


def test_no_hand_written_flag_repeats_a_config_default():
    """A hand-written add_argument in commands/ that sets default= to a config field's default, for a flag of the
    same name, is a second definition of that option: the flag must be generated from the field instead."""
    defaults = _config_defaults()
    found = []
    for command, p in build_parser()._subparsers._group_actions[0].choices.items():
        generated = {s.dest for s in options.specs(CONFIGS[command])} if command in CONFIGS else set()
        found += [f"{command} {f}" for f in _second_definitions(p, generated, defaults)]
    assert not found, "\n".join(found)


def test_the_second_definition_scan_sees_one():
    p = argparse.ArgumentParser()
    p.add_argument("--sweep-procs", type=int, default=1)
    p.add_argument("--per-class", type=int, default=3)  # another value: not a copy
    assert _second_definitions(p, set(), _config_defaults()) == [
        "--sweep-procs default 1 is Config.sweep_procs's too: generate the flag"]


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
            "gan-utkface-64-diffusion", "gan-catdog-64-paper-gaussian", "gan-catdog-64-paper-diffusion", "gan-cifar4-32"} <= names


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
                        ("gan-catdog-64", "gan-catdog-64"), ("gan-utkface-64-diffusion", "gan-utkface-64"),
                        ("gan-cifar4-32", "gan-cifar4-run9d"), ("cifar10-sweep-criterion", "cifar10-sweep-criterion"),
                        ("cifar10-m16-sgd-kuangliu", "cifar10-m16-sgd"),
                        ("cifar10-m16-sgd-kuangliu-wd-matched", "cifar10-m16-sgd-wd"),
                        ("cifar10-m16-sgd-kuangliu-wd-matched", "cifar10-m32-sgd-wd")):
        command = "train-gan" if recipe.startswith("gan-") else "train-classifier"
        cfg = dataclasses.asdict(_config(command, ["--config", str(ROOT / "recipes" / f"{recipe}.toml"), "--out", "x"]))
        saved = json.loads(next((ROOT / "checkpoints" / run).glob("config*.json")).read_text())
        saved = saved.get("train", saved)
        differ = {k for k in cfg if k in saved and saved[k] != cfg[k]} - {"data", "out", "init_from", "steps",
                                                                           "num_branches"}  # a sweep's: one M
        with open(ROOT / "recipes" / f"{recipe}.toml", "rb") as fh:
            if "precision" not in tomllib.load(fh):  # left to the machine: "auto" resolves per CPU (bf16 / fp32)
                differ.discard("precision")
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
