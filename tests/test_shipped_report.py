"""Shipped models in the report (experiments.shipped): only files inside the folder, one-line errors, sections."""

import json
import os

import pytest

from branchspec.errors import ConfigError
from branchspec.experiments import shipped


def _folder(tmp_path, figures, numbers=None):
    d = tmp_path / "gan-photo"
    d.mkdir()
    (d / "grid.png").write_bytes(b"\x89PNG grid")
    (d / "seg.png").write_bytes(b"\x89PNG seg")
    (d / "shipped.json").write_text(json.dumps({"title": "Photo G", "figures": figures,
                                                "numbers": numbers or {"border ratio": 1.1}, "notes": ["n1"]}))
    return d


def test_copy_by_section(tmp_path):
    d = _folder(tmp_path, [{"file": "grid.png", "caption": "grid", "command": "c1", "section": "decomposition"},
                           {"file": "seg.png", "caption": "eyes", "command": "c2", "section": "apps"}])
    out = tmp_path / "report" / "decomposition"
    docs = shipped.copy_all([str(d)], out, "decomposition")
    assert [f["file"] for f in docs[0]["figures"]] == ["grid.png"]
    assert (out / "shipped" / "gan-photo" / "grid.png").read_bytes() == b"\x89PNG grid"
    assert not (out / "shipped" / "gan-photo" / "seg.png").exists()
    from branchspec.report import Figure, Section

    own = Section("decomposition", "t", numbers={"own": 1}, figures=[Figure("a.png", "own")], notes=["own note"])
    sec = shipped.with_shipped(own, docs, out)
    figures, numbers, notes = sec.figures, sec.numbers, sec.notes
    assert figures[0] == own.figures[0] and figures[1].path == "decomposition/shipped/gan-photo/grid.png"
    assert "Photo G: grid" in figures[1].caption
    assert numbers == {"own": 1, "Photo G: border ratio": 1.1} and notes == ["own note", "Photo G: n1"]


@pytest.mark.parametrize("name", ["../outside.png", "/etc/hostname", "link.png", "missing.png", "sub"])
def test_files_outside_or_missing_are_refused_before_any_copy(tmp_path, name):
    (tmp_path / "outside.png").write_bytes(b"secret")
    d = _folder(tmp_path, [{"file": "grid.png"}, {"file": name}])
    os.symlink(tmp_path / "outside.png", d / "link.png")
    (d / "sub").mkdir()
    out = tmp_path / "rep"
    with pytest.raises(ConfigError) as err:
        shipped.copy_shipped(d, out)
    assert len(str(err.value).splitlines()) == 1
    assert not out.exists()  # nothing copied: every entry is checked first


@pytest.mark.parametrize("text", ["{", "[1, 2]", json.dumps({"figures": [{"nofile": 1}]}),
                                  json.dumps({"figures": [], "numbers": [1]}), "[" * 100000 + "]" * 100000])
def test_malformed_shipped_json_is_one_line(tmp_path, text):
    d = tmp_path / "m"
    d.mkdir()
    (d / "shipped.json").write_text(text)
    with pytest.raises(ConfigError) as err:
        shipped.read_shipped(d)
    assert "shipped.json" in str(err.value) and len(str(err.value).splitlines()) == 1


def test_every_shipped_folder_of_the_checkout_copies(tmp_path):
    """Each checkpoints/*/shipped.json lists only files inside its own folder (the demo copies them all)."""
    from pathlib import Path

    folders = sorted(p.parent for p in (Path(__file__).resolve().parents[1] / "checkpoints").glob("*/shipped.json"))
    assert folders, "no shipped model in the checkout"
    for f in folders:
        doc = shipped.copy_shipped(f, tmp_path / f.name)
        assert doc["figures"] and all((tmp_path / f.name / fig["file"]).is_file() for fig in doc["figures"])
