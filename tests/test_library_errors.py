"""The library names fields, the commands name flags.

A library error is ``ConfigError(field, reason)`` naming the parameter or Config field it refuses (other
settings in backticks); only ``commands/`` turns those names into command-line flags
(``commands._common.flag_errors``), so the API reads the same whether or not a command line is around it.
"""

import ast
import os
from pathlib import Path

import pytest
import torch

import branchspec
from branchspec.budget import MemoryBudgetError, check_threads, max_threads
from branchspec.checkpoint import CheckpointError, ResumeMismatch, check_runtime, load_checkpoint, save_checkpoint
from branchspec.commands._common import flag_errors
from branchspec.errors import BranchspecError, ConfigError, UsageError

SRC = Path(branchspec.__file__).parent
CLI_LAYER = ("commands/", "cli.py", "options.py")  # options.py builds the command line from the configs


def _library_modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if not rel.startswith(CLI_LAYER):
            yield rel, ast.parse(path.read_text(encoding="utf-8"))


def _is_budget_check(node: ast.AST) -> bool:
    """``budget.check(need, drivers)``, ``budget_check(...)``, ``check_budget(need, budget, what, hint)``: a
    memory-budget refusal whose arguments become the error's message."""
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Attribute) and f.attr == "check" and isinstance(f.value, ast.Name)
            and f.value.id == "budget") or (isinstance(f, ast.Name) and f.id in ("budget_check", "check_budget"))


def _flag_strings(tree: ast.AST):
    """``(line, text)`` of every string in a ``raise`` (or in the drivers of a memory-budget refusal) that
    spells a flag: starting with ``--`` or naming one after a space, as in ``"pass --resume"``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) or _is_budget_check(node):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    if sub.value.startswith("--") or " --" in sub.value or "(--" in sub.value:
                        yield sub.lineno, sub.value


def test_no_library_error_spells_a_flag():
    """No module outside the command line (commands/, cli.py, options.py) raises a message that spells a flag."""
    found = [f"{rel}:{line}: {text[:60]!r}" for rel, tree in _library_modules() for line, text in _flag_strings(tree)]
    assert not found, "library errors that spell a flag (raise ConfigError(field, reason)):\n" + "\n".join(found)


def test_the_scan_sees_a_flag():
    bad = ast.parse('def f(x, budget):\n    if x:\n        raise ValueError(f"--out: {x} exists")\n'
                    '    budget.check(1, f"{x} with --img-size 3")\n    raise ValueError("pass --resume")\n')
    assert sorted(line for line, _ in _flag_strings(bad)) == [3, 4, 5]
    assert not list(_flag_strings(ast.parse('raise ValueError(f"out: {x} exists; pass `resume`")')))


# ----------------------------------------------------------------------------- the API names its own parameters
def test_sweep_procs_below_one_is_a_config_error_of_procs():
    from branchspec.classifier.sweep import train_runs

    with pytest.raises(ConfigError, match="^procs: must be >= 1, got 0$") as e:
        train_runs([], procs=0)
    assert e.value.field == "procs" and e.value.exit_code == 2


def test_export_over_its_own_source_is_a_config_error_of_dst(tmp_path):
    from branchspec.train.export import export_weights, refuse_same_unit

    save_checkpoint(tmp_path / "last", {"model.w": torch.ones(2)}, {"model": {"kind": "toy"}})
    for dst in ("last", "last.safetensors", "sub/../last.json"):
        with pytest.raises(ConfigError) as e:
            refuse_same_unit(tmp_path / "last", tmp_path / dst)
        assert e.value.field == "dst" and "--" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        export_weights(tmp_path / "last", tmp_path / "last")
    assert e.value.field == "dst"


def test_resume_refusals_are_config_errors_of_resume(tmp_path):
    from branchspec.train.export import refuse_weights_only

    with pytest.raises(ResumeMismatch) as e:
        refuse_weights_only({"weights_only": True}, tmp_path / "last")
    assert isinstance(e.value, ConfigError) and isinstance(e.value, CheckpointError)
    assert e.value.field == "resume" and str(e.value).startswith("resume: ") and e.value.exit_code == 2
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        save_checkpoint(tmp_path / "c", {"w": torch.zeros(1)}, {})
        _, state = load_checkpoint(tmp_path / "c")
        torch.set_num_threads(2)
        with pytest.raises(ResumeMismatch, match="saved with `threads` 1") as e:
            check_runtime(state)
        assert e.value.field == "resume"
    finally:
        torch.set_num_threads(n)


def test_parameters_of_the_apps_are_named_as_fields():
    from branchspec.apps.batch import decomposition_files
    from branchspec.apps.manipulation import parse_alphas, parse_gains, parse_indices

    cases = [(lambda: parse_alphas("0:1:1"), "alphas"), (lambda: parse_indices("0,7", 3, "locators"), "locators"),
             (lambda: parse_indices("x", 3), "components"), (lambda: parse_gains("1,2", 3), "gains"),
             (lambda: decomposition_files("/nonexistent/d.npz"), "path"),
             (lambda: check_threads(max_threads() + 1), "threads")]
    for call, field in cases:
        with pytest.raises(ConfigError) as e:
            call()
        assert e.value.field == field and str(e.value).startswith(f"{field}: "), (field, str(e.value))


def test_a_bad_device_is_a_config_error_of_device(tmp_path):
    save_checkpoint(tmp_path / "c", {"w": torch.zeros(1)}, {})
    with pytest.raises(ConfigError) as e:
        load_checkpoint(tmp_path / "c", device="nope")
    assert e.value.field == "device"
    if not torch.cuda.is_available():
        from branchspec.train.distributed import DistContext

        with pytest.raises(ConfigError) as e:
            DistContext.setup("cuda")
        assert e.value.field == "device"


# ----------------------------------------------------------------------------- commands/: fields become flags
def test_flag_errors_names_the_flag_of_a_field_and_of_every_setting_in_backticks():
    flags = {"num_branches": "--branches", "world_size": "torchrun --nproc_per_node"}
    with pytest.raises(UsageError) as e, flag_errors(flags):
        raise ConfigError("out", "R already holds a run; pass `resume` to continue it")
    assert str(e.value) == "--out: R already holds a run; pass --resume to continue it" and e.value.exit_code == 2
    with pytest.raises(UsageError) as e, flag_errors(flags):
        raise ResumeMismatch("the run was saved with `world_size` 2, this process has 1")
    assert str(e.value) == "--resume: the run was saved with torchrun --nproc_per_node 2, this process has 1"
    with pytest.raises(BranchspecError) as e, flag_errors(flags):
        raise ConfigError("sweep_procs", "1 of 2 run(s) failed", usage=False)
    assert str(e.value) == "--sweep-procs: 1 of 2 run(s) failed" and e.value.exit_code == 1
    assert not isinstance(e.value, UsageError)
    with pytest.raises(MemoryBudgetError) as e, flag_errors(flags):  # keeps its class, shows the flags
        raise MemoryBudgetError("`batch_size` 9 with `num_branches` 4 needs ~9 GB")
    assert str(e.value) == "--batch-size 9 with --branches 4 needs ~9 GB"
    plain = CheckpointError(f"{os.sep}x{os.sep}last.json: torn")  # a file's error: as it was
    with pytest.raises(CheckpointError) as e, flag_errors(flags):
        raise plain
    assert e.value is plain


def test_the_command_line_still_names_the_flag(tmp_path, capsys):
    from branchspec.cli import main

    save_checkpoint(tmp_path / "last", {"model.w": torch.ones(2)}, {"model": {"kind": "toy"}})
    assert main(["export", "--checkpoint", str(tmp_path / "last"), "--out", str(tmp_path / "last")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("branchspec export: error: --out: ") and len(err.splitlines()) == 1, err
    out = tmp_path / "m"
    assert main(["manipulate", str(tmp_path / "nope.npz"), "--out", str(out), "--alphas=0:1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "error: --alphas: COUNT" in err and len(err.splitlines()) == 1, err
