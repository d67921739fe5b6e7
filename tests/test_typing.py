"""The public API type-checks under ``mypy --strict``: the files of pyproject's ``[tool.mypy]``.

``python -m mypy`` from the project root runs the same check (about 15 s cold, 2 s with its cache).
"""

import importlib
import inspect
import subprocess
import sys
import tomllib
from pathlib import Path

import branchspec

ROOT = Path(__file__).resolve().parents[1]
MYPY = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


def checked_files() -> set[Path]:
    out: set[Path] = set()
    for entry in MYPY["files"]:
        p = ROOT / entry
        out.update(p.rglob("*.py") if p.is_dir() else [p])
    return {p.resolve() for p in out}


def test_public_modules_pass_mypy_strict():
    res = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(ROOT / ".mypy_cache")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"mypy --strict found errors:\n{res.stdout[-6000:]}{res.stderr[-2000:]}"
    assert "Success" in res.stdout


def test_mypy_covers_every_public_name_without_escapes():
    assert MYPY["strict"] is True and "ignore_errors" not in MYPY and "overrides" not in MYPY
    files = checked_files()
    src = ROOT / "src"
    for name in branchspec.__all__:
        obj = getattr(branchspec, name)
        mod = obj if inspect.ismodule(obj) else importlib.import_module(obj.__module__)
        path = (src / mod.__name__.replace(".", "/")).with_suffix(".py")
        path = path if path.exists() else path.with_suffix("") / "__init__.py"
        assert path.resolve() in files, f"branchspec.{name} is defined in {path.relative_to(src)}, which mypy skips"
    for p in files:
        assert "type: ignore" not in p.read_text(), f"{p.relative_to(ROOT)} silences mypy"
