"""The shipped §7 photograph generators ``checkpoints/gan-{catdog,utkface}-64/last``.

Default tests: each loads through :func:`branchspec.loading.load_model` without ../shared (weights only,
reflect padding, M components that sum with R to the output) and its ``shipped.json`` lists only files
inside its folder. ``shared_data`` tests decompose a val image of the collection through the command
users run and check the numbers against the shipped ``decomposition.json`` of the same images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from branchspec.experiments.shipped import copy_shipped
from branchspec.loading import load_model
from branchspec.checkpoint import checkpoint_state

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BRANCHSPEC_SHARED_DATA", ROOT.parent / "shared" / "data"))
MODELS = {"gan-catdog-64": ("catdog-128", ["cat", "dog"]), "gan-utkface-64": ("utkface-128", ["female", "male"])}


def _ship(name: str) -> Path:
    d = ROOT / "checkpoints" / name
    if not (d / "last.safetensors").is_file():
        pytest.skip(f"{d} not shipped in this checkout")
    return d


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shipped_generator_loads_and_decomposes(name, tmp_path):
    d = _ship(name)
    state = checkpoint_state(d / "last")
    assert state.get("weights_only") or "opt_g" not in state  # nothing to resume: a shipped model
    g, state = load_model(d / "last")
    assert state["domains"] == MODELS[name][1] and state["img_size"] == 64
    assert state["model"]["config"]["padding"] == "reflect"
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = torch.tensor([0, 1])
    with torch.no_grad():
        f, v, r = g.forward_all(x, torch.stack([y, y], -1) if state["model"]["config"]["source_aware"] else y)
    assert v.shape == (9, 2, 3, 64, 64) and torch.isfinite(f).all()
    torch.testing.assert_close(r + v.sum(0), f, rtol=1e-4, atol=1e-4)
    doc = copy_shipped(d, tmp_path / "copy")  # every listed figure exists inside the folder
    assert doc["figures"] and all((tmp_path / "copy" / fig["file"]).is_file() for fig in doc["figures"])


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(MODELS))
def test_shipped_generator_decomposes_val_images_as_recorded(name, tmp_path, capsys):
    from branchspec.cli import main

    d = _ship(name)
    collection, domains = MODELS[name]
    val = DATA / collection / "val"
    if not val.is_dir():
        pytest.skip(f"{val} not available")
    recorded = json.loads((d / "decomposition.json").read_text())
    first = [str(val / dom / recorded_name) for dom in domains
             for recorded_name in sorted(p.name for p in (val / dom).iterdir())[:2]]
    assert main(["decompose", "--checkpoint", str(d / "last"), *first, "--out", str(tmp_path / "dec")]) == 0
    out = capsys.readouterr().out
    assert "border ratio" in out
    s = json.loads((tmp_path / "dec" / "decomposition.json").read_text())
    assert s["images"] == 4 and s["skipped"] == 0
    assert s["spatial"]["border_ratio_max"] < 2.0  # no frame (the shipped run's value is in shipped.json)
    assert recorded["branches"] == s["branches"] == 9
