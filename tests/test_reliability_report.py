"""Hostile report folders: ``branchspec report`` reads only regular files inside its folder, each under a size
limit, holds the page to a budget, never embeds itself, and turns every unusable file into a counted warning."""

from __future__ import annotations

import base64
import errno
import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from branchspec import report
from branchspec.cli import main
from branchspec.errors import ConfigError
from branchspec.experiments import classifier, shipped
from branchspec.experiments.apps_folders import section_for
from branchspec.io import TooLarge, read_capped


@contextmanager
def _deadline(seconds: int = 30):
    """Fail instead of hanging for ever (a FIFO opened for reading blocks until a writer comes)."""
    def boom(*_):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _png(path: Path, side: int = 8, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)  # noise: PNG cannot shrink it
    Image.fromarray(a).save(path)
    return path


def _section(out: Path, key: str, figures=(), numbers=None, **extra) -> Path:
    (out / key).mkdir(parents=True, exist_ok=True)
    doc = {"key": key, "title": f"T {key}", "numbers": numbers or {},
           "figures": [{"path": f, "caption": "c"} for f in figures], **extra}
    (out / key / "section.json").write_text(json.dumps(doc))
    return out / key / "section.json"


def _report(capsys, out: Path) -> tuple[int, list[str], str]:
    with _deadline():
        rc = main(["report", "--out", str(out)])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err and "Traceback" not in cap.out, cap.err
    warnings = [line for line in cap.out.splitlines() if line.startswith("report: warning:")]
    return rc, warnings, (out / "report.html").read_text() if (out / "report.html").exists() else ""


# ----------------------------------------------------------------------------- only regular files, never blocking
def test_fifo_section_json_is_skipped_not_waited_on(tmp_path, capsys):
    _section(tmp_path, "good")
    (tmp_path / "bad").mkdir()
    os.mkfifo(tmp_path / "bad" / "section.json")
    rc, warnings, page = _report(capsys, tmp_path)
    assert rc == 0 and "T good" in page
    assert any("bad/section.json skipped: not a regular file" in w for w in warnings), warnings


@pytest.mark.parametrize("what", ["section", "figure"])
def test_links_to_dev_zero_are_not_read(tmp_path, capsys, what):
    if what == "section":
        (tmp_path / "z").mkdir()
        os.symlink("/dev/zero", tmp_path / "z" / "section.json")
        _section(tmp_path, "good")
    else:
        _section(tmp_path, "good", figures=["good/z.png"])
        os.symlink("/dev/zero", tmp_path / "good" / "z.png")
    rc, warnings, page = _report(capsys, tmp_path)
    assert rc == 0 and "T good" in page and len(page) < 100_000
    assert any("outside" in w for w in warnings), warnings


def test_a_fifo_figure_inside_the_folder_is_not_read(tmp_path):
    _section(tmp_path, "a", figures=["a/pipe.png"])
    os.mkfifo(tmp_path / "a" / "pipe.png")
    warnings: list[str] = []
    with _deadline():
        page = report.write_report(tmp_path, warnings=warnings).read_text()
    assert "figure left out: a/pipe.png: not a regular file" in page
    assert warnings == ["1 figure(s) not embedded (first: a/pipe.png: not a regular file)"]


def test_read_capped_never_reads_past_its_limit(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 1000)
    with pytest.raises(TooLarge) as e:
        read_capped(tmp_path / "big", 999)
    assert e.value.size == 1000
    assert read_capped(tmp_path / "big", 1000) == b"x" * 1000
    with pytest.raises(ValueError, match="not a regular file"):
        read_capped("/dev/zero", 10)
    with pytest.raises(ValueError, match="not a regular file"):
        read_capped(tmp_path, 10)


# ----------------------------------------------------------------------------- links out of the folder
def test_symlinked_section_or_subfolder_out_of_the_folder_is_not_followed(tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    _section(outside, "sec", title="OUTSIDE")
    out = tmp_path / "rep"
    _section(out, "good")
    os.symlink(outside / "sec", out / "linked-folder")
    (out / "linked-file").mkdir()
    os.symlink(outside / "sec" / "section.json", out / "linked-file" / "section.json")
    rc, warnings, page = _report(capsys, out)
    assert rc == 0 and "OUTSIDE" not in page and "T good" in page
    assert sum("outside" in w for w in warnings) == 2, warnings


def test_links_inside_the_folder_still_work(tmp_path):
    _png(tmp_path / "figs" / "a.png")
    _section(tmp_path, "a", figures=["a/link.png"])
    os.symlink(tmp_path / "figs" / "a.png", tmp_path / "a" / "link.png")
    page = report.write_report(tmp_path).read_text()
    assert base64.b64encode((tmp_path / "figs" / "a.png").read_bytes()).decode() in page


# ----------------------------------------------------------------------------- malformed and unreadable
def test_deep_json_and_huge_integers_are_skipped_with_a_warning(tmp_path, capsys):
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "section.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "section.json").write_text('{"key": "d", "numbers": {"x": 1' + "0" * 5000 + "}}")
    _section(tmp_path, "good")
    rc, warnings, page = _report(capsys, tmp_path)
    assert rc == 0 and "T good" in page
    assert any(w.startswith("report: warning: deep/section.json skipped: unreadable") for w in warnings), warnings
    assert any(w.startswith("report: warning: digits/section.json skipped: unreadable") for w in warnings), warnings


def test_a_symlink_loop_figure_is_a_counted_skip(tmp_path, capsys):
    _section(tmp_path, "a", figures=["a/loop.png"])
    os.symlink("loop.png", tmp_path / "a" / "loop.png")
    rc, warnings, page = _report(capsys, tmp_path)
    assert rc == 0 and "figure left out: a/loop.png" in page
    assert warnings == ["report: warning: 1 figure(s) not embedded (first: a/loop.png: a symbolic link loop)"] or \
        "a/loop.png" in warnings[0]


def _deny(monkeypatch, func: str, victim: Path):
    """``os.<func>`` raising EACCES for ``victim`` (the tests run as root, where chmod 000 does not stop a read)."""
    real = getattr(os, func)

    def fake(path, *a, **k):
        if Path(os.fsdecode(path)) == victim:
            raise PermissionError(errno.EACCES, "Permission denied", str(victim))
        return real(path, *a, **k)

    monkeypatch.setattr(os, func, fake)


def test_unreadable_figure_and_subfolder_are_counted_skips(tmp_path, capsys, monkeypatch):
    fig = _png(tmp_path / "a" / "f.png")
    _section(tmp_path, "a", figures=["a/f.png"])
    _section(tmp_path, "locked")
    _deny(monkeypatch, "open", fig.resolve())
    _deny(monkeypatch, "lstat", tmp_path / "locked" / "section.json")
    rc, warnings, page = _report(capsys, tmp_path)
    assert rc == 0 and "figure left out: a/f.png: permission denied" in page
    assert any("locked/section.json skipped: permission denied" in w for w in warnings), warnings


def test_unreadable_report_folder_is_one_line_naming_out(tmp_path, capsys, monkeypatch):
    _section(tmp_path, "a")
    _deny(monkeypatch, "scandir", tmp_path)
    rc = main(["report", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--out" in err and "permission denied" in err, err


# ----------------------------------------------------------------------------- budget and the page itself
@pytest.mark.parametrize("entries", [300, 3000])
def test_many_figure_entries_stay_within_the_page_budget(tmp_path, capsys, monkeypatch, entries):
    monkeypatch.setattr(report, "MAX_PAGE_BYTES", 2 << 20)
    _png(tmp_path / "a" / "big.png", side=300)  # ~270 kB of noise: 7 fit in 2 MB
    _section(tmp_path, "a", figures=["a/big.png"] * entries)
    rc, warnings, page = _report(capsys, tmp_path)
    assert rc == 0 and len(page.encode()) <= 2 << 20
    embedded = page.count("<img ")
    assert 1 <= embedded < 10
    assert any(f"{entries - embedded} figure(s) and 0 section(s) left out" in w for w in warnings), warnings
    assert f"{entries - embedded} figure(s) and 0 section(s) left out" in page


def test_sections_past_the_budget_are_counted(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(report, "MAX_PAGE_BYTES", 64 << 10)
    for i in range(40):
        _section(tmp_path, f"s{i:02d}", intro="x" * 4000)
    rc, warnings, page = _report(capsys, tmp_path)
    assert rc == 0 and len(page.encode()) <= 64 << 10
    assert any("section.json file(s) left out" in w or "section(s) left out" in w for w in warnings), warnings


def test_report_never_embeds_itself(tmp_path, capsys):
    _section(tmp_path, "a", figures=["report.html", "a/hard.html"])
    sizes = []
    for _ in range(3):
        rc, warnings, page = _report(capsys, tmp_path)
        assert rc == 0
        if not (tmp_path / "a" / "hard.html").exists():
            os.link(tmp_path / "report.html", tmp_path / "a" / "hard.html")  # the page under another name
        sizes.append(len(page))
    assert max(sizes) - min(sizes) < 200, sizes  # the page does not grow with each rebuild
    assert "report.html: it is the report page itself" in page


def test_a_file_that_is_not_an_image_is_not_embedded(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("<script>alert(1)</script>")
    _section(tmp_path, "a", figures=["a/notes.txt"])
    page = report.write_report(tmp_path).read_text()
    assert "not a PNG, GIF or JPEG image" in page and "alert(1)" not in page


# ----------------------------------------------------------------------------- numbers a table cannot hold
def test_huge_numbers_render_in_the_table(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "section.json").write_text(
        '{"key": "a", "title": "A", "numbers": {"big": 1' + "0" * 400 + ', "inf": 1e400, "text": "ok"}}')
    rc, warnings, page = _report(capsys, tmp_path)
    assert rc == 0 and not warnings
    assert "<td>1.000e+400</td>" in page and "<td>inf</td>" in page and "<td>ok</td>" in page


def test_folder_report_tabulates_a_huge_psnr(tmp_path):
    (tmp_path / "dec").mkdir()
    (tmp_path / "dec" / "decomposition.json").write_text(
        '{"images": 2, "psnr": 1' + "0" * 400 + ', "ssim": "n", "judge": {"transfer_accuracy": 1' + "0" * 400 + "}}")
    sec = section_for(tmp_path / "dec")
    assert "1.000e+400" in sec.numbers["PSNR (dB): re-generation vs input / R alone vs input"]
    assert sec.numbers["transfer accuracy: G(x, ỹ) judged ỹ, ỹ ≠ y"] == "1.000e+400"


# ----------------------------------------------------------------------------- shipped.json / analysis.json
def _shipped(tmp_path, analysis_text=None):
    d = tmp_path / "ship"
    _png(d / "grid.png")
    (d / "shipped.json").write_text(json.dumps({"title": "S", "figures": [{"file": "grid.png"}]}))
    if analysis_text is not None:
        (d / "analysis").mkdir()
        (d / "analysis" / "analysis.json").write_text(analysis_text)
    return d


def test_shipped_json_linked_out_of_its_folder_is_refused(tmp_path):
    d = _shipped(tmp_path)
    (tmp_path / "real.json").write_text((d / "shipped.json").read_text())
    (d / "shipped.json").unlink()
    os.symlink(tmp_path / "real.json", d / "shipped.json")
    with pytest.raises(ConfigError, match="outside") as e:
        shipped.read_shipped(d)
    assert len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize("text", ["[" * 100_000, '{"accuracy": "x"}', "[1]", "\xff"])
def test_malformed_shipped_analysis_json_is_one_line(tmp_path, text):
    d = _shipped(tmp_path, text)
    with pytest.raises(ConfigError, match="analysis.json") as e:
        classifier._copy_shipped(d, tmp_path / "out")
    assert len(str(e.value).splitlines()) == 1


def test_shipped_analysis_fifo_is_one_line(tmp_path):
    d = _shipped(tmp_path)
    (d / "analysis").mkdir()
    os.mkfifo(d / "analysis" / "analysis.json")
    with _deadline(), pytest.raises(ConfigError, match="not a regular file"):
        classifier._copy_shipped(d, tmp_path / "out")


def test_shipped_analysis_with_huge_numbers_renders(tmp_path):
    big = "1" + "0" * 400
    d = _shipped(tmp_path, '{"accuracy": %s, "num_active": %s, "num_silent": 0, "mean_abs_offdiag_correlation": 0.5,'
                 ' "train_split": {"loss": %s, "loss_floor": 1, "above_floor": -%s, "accuracy": 1}}' % (big, big, big, big))
    numbers = classifier._copy_shipped(d, tmp_path / "out")["numbers"]
    assert numbers["test accuracy (analysis)"] == "1.000e+400"
    assert "-1.000e+400" in numbers["training-split loss (un-augmented) vs floor"]
