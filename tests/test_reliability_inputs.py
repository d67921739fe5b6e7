"""Hostile inputs (issue 13): every malformed argument, checkpoint, .npz, pickle or image is a one-line
error (or a counted skip), sizes are bounded before allocation, and the report stays in its folder."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

from branchspec.apps.components import Decomposition
from branchspec.cli import main
from branchspec.data.cifar import _Py2Pickler, read_batch, read_class_names
from branchspec.data.folders import _read_image, load_image_folders
from branchspec.errors import BranchspecError, DataError
from branchspec.loading import load_model
from branchspec.models.registry import model_spec
from branchspec.report import write_report
from branchspec.toy import toy_model
from branchspec.checkpoint import STATE_KEY, CheckpointError, prefixed


def _one_line_error(capsys, rc, want_rc=(2,), names=None):
    err = capsys.readouterr().err.strip()
    assert rc in want_rc, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    if names:
        assert names in err, err
    return err


# ----------------------------------------------------------------------------- numeric arguments
BAD_ARGS = [
    (["train-classifier", "--data", "digits", "--lr", "inf"], "--lr"),
    (["train-classifier", "--data", "digits", "--lr", "nan"], "--lr"),
    (["train-classifier", "--data", "digits", "--width", "nan"], "--width"),
    (["train-classifier", "--data", "digits", "--width", "1e9"], "--width"),
    (["train-classifier", "--data", "digits", "--weight-decay", "-1"], "--weight-decay"),
    (["train-classifier", "--data", "digits", "--seed", str(2**64)], "--seed"),
    (["train-classifier", "--data", "digits", "--seed", "-1"], "--seed"),
    (["train-classifier", "--data", "digits", "--threads", "0"], "--threads"),
    (["train-classifier", "--data", "digits", "--max-steps", "0"], "--max-steps"),
    (["train-classifier", "--data", "digits", "--save-every", "-2"], "--save-every"),
    (["train-classifier", "--data", "digits", "--branches", "1000000000"], "--branches"),
    (["train-gan", "--r1", "nan"], "--r1"),
    (["train-gan", "--threads", "0"], "--threads"),
    (["train-gan", "--img-size", "131072"], "--img-size"),
    (["train-gan", "--sigma", "inf"], "--sigma"),
    (["train-gan", "--branches", "1000000000"], "--branches"),
    (["hessian", "--checkpoint", "x", "--max-memory-gb", "inf"], "--max-memory-gb"),
    (["toy", "--lr", "inf"], "--lr"),
    (["toy", "--branches", "2-100000000"], "--branches"),
    (["decompose", "--checkpoint", "x", "a.png", "--img-size", "7"], "--img-size"),
    (["decompose", "--checkpoint", "x", "a.png", "--img-size", "100000"], "--img-size"),
    (["decompose", "--checkpoint", "x", "a.png", "--device", "banana"], "--device"),
    (["segment", "d.npz", "--mu", "nan"], "--mu"),
]


@pytest.mark.parametrize("argv,arg", BAD_ARGS, ids=[" ".join(a[0][:1] + a[0][-2:]) for a in BAD_ARGS])
def test_bad_numbers_are_one_line_usage_errors(tmp_path, capsys, argv, arg):
    rc = main(argv + ["--out", str(tmp_path / "o")])
    _one_line_error(capsys, rc, names=arg)


# ----------------------------------------------------------------------------- checkpoint fuzz
def _toy_ckpt(tmp_path, state_text: str | None, json_text: str | None):
    """A toy checkpoint whose state is ``state_text`` (in the unit) or ``json_text`` (previous format)."""
    m = toy_model(2, seed=0)
    tensors = prefixed("model", m.state_dict())
    meta = {STATE_KEY: state_text} if state_text is not None else None
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "c.safetensors"), metadata=meta)
    if json_text is not None:
        (tmp_path / "c.json").write_text(json_text)
    return tmp_path / "c"


GOOD = {"model": model_spec("toy", {"num_branches": 2}), "step": 0}
STATES = [
    "[]", "null", '"x"', "{", '{"model": {"kind": ["toy"]}}', '{"model": {"kind": "toy", "config": null}}',
    '{"model": {"kind": "toy", "config": {"num_branches": "2"}}}',
    '{"model": {"kind": "toy", "config": {"num_branches": -1}}}',
    '{"model": {"kind": "toy", "config": {"num_branches": 1000000000}}}',
    '{"model": {"kind": "toy", "config": {"num_branches": 3}}}',
    '{"model": {"kind": "toy", "config": {"num_branches": 2, "init_scale": NaN}}}',
    '{"model": {"kind": "nope", "config": {}}}', '{"model": "toy"}', '{"step": 1}',
]


@pytest.mark.parametrize("where", ["unit", "json"])
@pytest.mark.parametrize("text", STATES)
def test_malformed_checkpoint_state_is_one_line(tmp_path, text, where):
    path = _toy_ckpt(tmp_path, text if where == "unit" else None, None if where == "unit" else text)
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("wf", [7, "../../x", None])
def test_weights_file_field_is_ignored_weights_sit_beside_the_json(tmp_path, wf):
    path = _toy_ckpt(tmp_path, None, json.dumps({**GOOD, "weights_file": wf}))
    model, state = load_model(path)
    assert model.num_branches == 2 and "weights_file" not in state


def test_checkpoint_with_non_finite_buffers_is_refused_for_analysis(tmp_path):
    m = toy_model(2, seed=0)
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    sd["branches.1.bias"].fill_(float("inf"))
    save_file(prefixed("model", sd), str(tmp_path / "c.safetensors"), metadata={STATE_KEY: json.dumps(GOOD)})
    with pytest.raises(CheckpointError, match="NaN/inf"):
        load_model(tmp_path / "c")


def test_truncated_or_garbage_weights_are_one_line(tmp_path):
    path = _toy_ckpt(tmp_path, json.dumps(GOOD), None)
    blob = (tmp_path / "c.safetensors").read_bytes()
    for junk in (blob[: len(blob) // 2], b"\xff" * 40, b""):
        (tmp_path / "c.safetensors").write_bytes(junk)
        with pytest.raises(CheckpointError) as e:
            load_model(path)
        assert "\n" not in str(e.value)


def test_gan_checkpoint_given_to_analyze_classifier_is_one_line(tmp_path, capsys):
    path = _toy_ckpt(tmp_path, json.dumps(GOOD), None)
    rc = main(["analyze-classifier", "--checkpoint", str(path), "--data", "digits", "--out", str(tmp_path / "a")])
    _one_line_error(capsys, rc, want_rc=(1, 2))


# ----------------------------------------------------------------------------- npz fuzz (manipulate / segment)
def _dec(m=2, c=3, h=8, w=8):
    rng = np.random.RandomState(0)
    return dict(R=rng.rand(c, h, w).astype(np.float32), components=rng.rand(m, c, h, w).astype(np.float32),
                output=rng.rand(c, h, w).astype(np.float32))


NPZ = {
    "empty": {}, "value_range_0d": {**_dec(), "value_range": np.array(1.0)},
    "value_range_str": {**_dec(), "value_range": np.array(["a", "b"])},
    "value_range_inf": {**_dec(), "value_range": np.array([0.0, np.inf])},
    "M0": _dec(m=0), "HW0": _dec(h=0, w=0), "C4": _dec(c=4), "strings": {**_dec(), "R": np.array(["x"])},
}


@pytest.mark.parametrize("cmd", ["segment", "manipulate"])
@pytest.mark.parametrize("name", [*NPZ, "plain_npy", "not_zip"])
def test_malformed_npz_is_one_line(tmp_path, capsys, name, cmd):
    p = tmp_path / "d.npz"
    if name == "plain_npy":
        np.save(tmp_path / "d.npy", np.zeros(3))
        (tmp_path / "d.npy").rename(p)
    elif name == "not_zip":
        p.write_bytes(b"PK\x03\x04 garbage")
    else:
        np.savez(p, **NPZ[name])
    extra = ["--component", "0"] if cmd == "manipulate" else []
    rc = main([cmd, str(p), *extra, "--out", str(tmp_path / "o")])
    _one_line_error(capsys, rc, names="d.npz" if name in ("plain_npy", "not_zip", "empty") else None)


def test_npz_zip_bomb_refused_before_inflating(tmp_path, monkeypatch):
    from branchspec.budget import MemoryBudgetError

    p = tmp_path / "d.npz"
    np.savez_compressed(p, **_dec(h=64, w=64))
    monkeypatch.setenv("BRANCHSPEC_MEMORY_GB", "0.0001")  # below what the arrays take
    with pytest.raises(MemoryBudgetError, match="memory budget"):
        Decomposition.load(p)


# ----------------------------------------------------------------------------- pickle fuzz (CIFAR)
def _pickle(obj) -> bytes:
    b = io.BytesIO()
    _Py2Pickler(b, protocol=2).dump(obj)
    return b.getvalue()


class _NdarrayCall:
    def __reduce__(self):
        return (np.ndarray, ((300000, 3072), "u1"))


class _BigReconstruct:
    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, (300000, 3072), b"u1"))


def _ok_data(n=2):
    return np.zeros((n, 3072), np.uint8)


PICKLES = {
    "ndarray_call": {b"data": _NdarrayCall(), b"labels": [0]},
    "big_reconstruct": {b"data": _BigReconstruct(), b"labels": [0]},
    "object_dtype": {b"data": np.array([None, 1], dtype=object), b"labels": [0, 1]},
    "float_labels": {b"data": _ok_data(), b"labels": [1.7, 2.0]},
    "huge_labels": {b"data": _ok_data(), b"labels": [10**30, 1]},
    "bool_labels": {b"data": _ok_data(), b"labels": [True, False]},
    "label_out_of_range": {b"data": _ok_data(), b"labels": [10, 1]},
    "not_a_dict": [1, 2],
    "no_data": {b"labels": [1]},
    "wrong_shape": {b"data": np.zeros((2, 7), np.uint8), b"labels": [0, 1]},
}


@pytest.mark.parametrize("name", [*PICKLES, "truncated", "empty"])
def test_malformed_cifar_batch_is_one_line(tmp_path, name):
    p = tmp_path / "data_batch_1"
    if name == "truncated":
        p.write_bytes(_pickle({b"data": _ok_data(), b"labels": [0, 1]})[:100])
    elif name == "empty":
        p.write_bytes(b"")
    else:
        p.write_bytes(_pickle(PICKLES[name]))
    with pytest.raises(BranchspecError) as e:
        read_batch(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_non_utf8_class_names_are_one_line(tmp_path):
    (tmp_path / "batches.meta").write_bytes(_pickle({b"label_names": [b"\xff\xfe"] * 10}))
    with pytest.raises(DataError, match="UTF-8"):
        read_class_names(tmp_path)


def test_valid_batch_still_reads(tmp_path):
    x = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    (tmp_path / "b").write_bytes(_pickle({b"data": x, b"labels": [3, 4]}))
    imgs, labels = read_batch(tmp_path / "b")
    assert imgs.shape == (2, 32, 32, 3) and labels.tolist() == [3, 4] and imgs[0, 0, 1, 0] == x[0, 1]


# ----------------------------------------------------------------------------- images
def _bomb_png(path, side=30000):
    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((20, 20), 32768, np.uint16)).save(tmp_path / "a.png")
    a = _read_image(tmp_path / "a.png", 16)
    assert abs(float(a.mean()) - 128) < 1.0


def test_decompression_bomb_in_a_folder_is_a_counted_skip(tmp_path):
    for d in ("cat", "dog"):
        (tmp_path / "train" / d).mkdir(parents=True)
        Image.new("RGB", (20, 20), (10, 200, 10)).save(tmp_path / "train" / d / "ok.png")
    _bomb_png(tmp_path / "train" / "cat" / "bomb.png")
    data = load_image_folders(tmp_path, 16, progress=False)
    assert data.skipped == 1 and len(data) == 2


def test_decompression_bomb_as_truth_mask_is_one_line(tmp_path, capsys):
    Decomposition(**_dec()).save(tmp_path / "d.npz")
    _bomb_png(tmp_path / "t.png")
    rc = main(["segment", str(tmp_path / "d.npz"), "--truth", str(tmp_path / "t.png"), "--out", str(tmp_path / "o")])
    _one_line_error(capsys, rc, names="--truth")


# ----------------------------------------------------------------------------- report
def test_report_embeds_only_its_own_files_and_escapes_keys(tmp_path):
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(secret)
    out = tmp_path / "rep"
    (out / "x").mkdir(parents=True)
    Image.new("RGB", (4, 4), (9, 9, 9)).save(out / "x" / "ok.png")
    evil = "x'><script>alert(1)</script>"
    (out / "x" / "section.json").write_text(json.dumps({
        "key": evil, "title": "<b>t</b>", "figures": [{"path": str(secret), "caption": "c"},
                                                      {"path": "../secret.png", "caption": "d"},
                                                      {"path": "x/ok.png", "caption": "e"}]}))
    (out / "bad").mkdir()
    (out / "bad" / "section.json").write_text('{"key": ["not", "a", "string"]}')
    (out / "worse").mkdir()
    (out / "worse" / "section.json").write_text("[")
    page = write_report(out).read_text()
    import base64

    assert base64.b64encode(secret.read_bytes()).decode() not in page
    assert base64.b64encode((out / "x" / "ok.png").read_bytes()).decode() in page
    assert "<script>" not in page and "<b>t</b>" not in page
    assert page.count("figure left out") == 2
    assert "bad/section.json skipped" in page and "worse/section.json skipped" in page


def test_decompression_bomb_end_to_end_in_train_gan_and_decompose(tmp_path, capsys):
    """The 69-byte 30000×30000 PNG in a real folder: train-gan trains on the rest, decompose skips and counts it."""
    root = tmp_path / "data"
    for d, colour in (("cat", (200, 90, 10)), ("dog", (10, 90, 200))):
        (root / "train" / d).mkdir(parents=True)
        for i in range(2):  # textured: a perfectly flat image has zero variance under G's reflect padding
            a = np.clip(np.array(colour)[None, None] + np.random.default_rng(i).integers(-40, 40, (20, 20, 3)), 0, 255)
            Image.fromarray(a.astype(np.uint8)).save(root / "train" / d / f"ok{i}.png")
    _bomb_png(root / "train" / "cat" / "bomb.png")
    rc = main(["train-gan", "--data", str(root), "--img-size", "16", "--branches", "2", "--steps", "1",
               "--batch-size", "2", "--base-width", "4", "--max-width", "8", "--threads", "1",
               "--out", str(tmp_path / "run"), "--no-progress"])
    assert rc == 0
    rc = main(["decompose", "--checkpoint", str(tmp_path / "run" / "checkpoints" / "last"), str(root / "train"),
               "--out", str(tmp_path / "dec")])
    assert rc == 0
    summary = json.loads((tmp_path / "dec" / "decomposition.json").read_text())
    assert summary["skipped"] == 1 and summary["images"] == 4
    assert "bomb.png" in " ".join(map(str, summary["skipped_files"]))
