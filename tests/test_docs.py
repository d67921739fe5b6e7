"""Every ``>>>`` example in src/branchspec and the docs pages' examples run; the wheel ships py.typed and LICENSE."""

import doctest
import importlib
import os
import pkgutil
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import branchspec

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(m.name for m in pkgutil.walk_packages(branchspec.__path__, "branchspec.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    mod = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(mod, name):  # globals: a copy of the module's
        if test.examples:
            runner.run(test)
    res = runner.summarize(verbose=False)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples failed in {name} (output above)"


def test_public_api_is_curated_and_typed():
    assert (ROOT / "src/branchspec/py.typed").exists() and (ROOT / "LICENSE").read_text().startswith("MIT License")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in cfg["tool"]["setuptools"]["package-data"]["branchspec"]
    assert cfg["project"]["license"] == {"text": "MIT"}
    for name in branchspec.__all__:
        assert getattr(branchspec, name) is not None, name
    assert len(set(branchspec.__all__)) == len(branchspec.__all__)


@pytest.mark.slow
def test_wheel_ships_typing_marker_and_licence(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, cwd=tmp_path)
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    assert "branchspec/py.typed" in names and any(n.endswith("licenses/LICENSE") for n in names)


def test_architecture_page_example_runs(tmp_path):
    """The registration example of docs/architectures.md, run as a user would paste it (a fresh process)."""
    text = (ROOT / "docs" / "architectures.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "save_model(" in b]
    assert len(blocks) == 1
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "'kind': 'my-conv-classifier'" in res.stdout and "active branches:" in res.stdout
