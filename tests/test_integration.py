"""Parts working together through their files, as a user chains the commands."""

import json

import numpy as np
import pytest

from branchspec.cli import main


def test_toy_checkpoints_feed_the_hessian_command(tmp_path):
    toy = tmp_path / "toy"
    assert main(["toy", "--problem", "toy1", "--branches", "3-4", "--trials", "4", "--steps", "200",
                 "--out", str(toy), "--save-model"]) == 0
    ckpts = sorted((toy / "models").glob("m4_*.json"))
    assert [c.stem for c in ckpts] == ["m4_init", "m4_trained"]
    out = tmp_path / "hess"
    assert main(["hessian", "--checkpoint", str(toy / "models" / "m4_trained"),
                 "--compare-checkpoint", str(toy / "models" / "m4_init"),
                 "--params", "first-layer", "--batch", "4", "--out", str(out)]) == 0
    doc = json.loads((out / "hessian.json").read_text())
    assert len(doc["block_norms"]) == 4 and doc["num_params"] == 8
    with np.load(out / "hessian.npz") as z:
        H, bnd = z["H"].astype(np.float64), z["boundaries"].tolist()
    assert bnd == [0, 2, 4, 6, 8]
    on_blocks = sum((H[a:b, a:b] ** 2).sum() for a, b in zip(bnd, bnd[1:]))  # by hand: Σ_k ‖H_kk‖² / ‖H‖²
    assert doc["block_diagonality"] == pytest.approx(on_blocks / (H ** 2).sum(), rel=1e-5)
