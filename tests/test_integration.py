"""Parts working together through their files, as a user chains the commands."""

import json

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
    assert 0.0 <= doc["block_diagonality"] <= 1.0
