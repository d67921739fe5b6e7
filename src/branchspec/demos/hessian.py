"""Demo part "hessian": the toy model's Hessian at initialisation vs after training (§5.2, §8, Fig. 5).

Takes the toy checkpoints ``ctx["toy_checkpoints"] = {"init": path, "trained": path}``
when the toy part provides them; otherwise trains its own M = 10 toy model
(full-batch gradient descent on Toy1, §4.1) and saves both checkpoints
under ``out_dir/hessian/checkpoints``. Then runs exactly what
``branchspec hessian`` runs on the two checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import torch

from branchspec.figures.hessian import draw
from branchspec.hessian import HessianConfig, data_for, l2_sum, save_results
from branchspec.toy import PROBLEMS
from branchspec.loading import load_model
from branchspec.models.registry import model_spec
from branchspec.report import Figure, Section
from branchspec.toy import toy_model
from branchspec.train.checkpoint import prefixed, save_checkpoint

M = 10  # branches of the demo toy model
SEED = 0  # initialisation seed of the demo toy model
LR = 0.05  # full-batch GD step


def train_toy(folder: Path, steps: int, seed: int = SEED) -> dict[str, Path]:
    """Train an M=10 toy model on Toy1 by full-batch GD; save init and trained checkpoints."""
    xs, ys = PROBLEMS["toy1"]
    x = torch.tensor(xs).reshape(-1, 1)  # (N, 1)
    y = torch.tensor(ys).reshape(-1, 1)  # (N, 1)
    model = toy_model(M, seed=seed)
    state = {"model": model_spec("toy", {"num_branches": M}), "data": {"x": xs, "y": ys}, "loss": "l2"}
    paths = {"init": Path(folder) / "toy_init"}
    save_checkpoint(paths["init"], prefixed("model", model.state_dict()), {**state, "step": 0})
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss = None
    for _ in range(steps):
        opt.zero_grad()
        loss = l2_sum(model(x), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = l2_sum(model(x), y).item()
    paths["trained"] = Path(folder) / "toy_trained"
    save_checkpoint(paths["trained"], prefixed("model", model.state_dict()),
                    {**state, "step": steps, "final_loss": final})
    return paths


def _one(path, label: str, probes: int):
    model, state = load_model(path)
    data = data_for("toy", model, state, 4)
    res, H = HessianConfig(params="all", batch=4, probes=probes).run(model, data)
    with torch.no_grad():
        res["loss_value"] = data.loss_fn(model(data.x), data.y).item()
    res.update(checkpoint=str(path), model_kind="toy", label=label)
    return res, H


def run(out_dir: Path, ctx: dict, quick: bool = False) -> Section:
    d = Path(out_dir) / "hessian"
    d.mkdir(parents=True, exist_ok=True)
    ck = ctx.get("toy_checkpoints")
    source = "the toy part's checkpoints"
    if not ck:
        steps = 300 if quick else 3000
        ck = train_toy(d / "checkpoints", steps)
        source = f"an M={M} toy model trained here on Toy1 ({steps} full-batch GD steps, lr {LR}, seed {SEED})"
    probes = 4 if quick else 16
    trained, tr_H = _one(ck["trained"], "after training", probes)
    init, in_H = _one(ck["init"], "initialisation", probes)
    save_results(d, trained, tr_H, init, in_H)
    figs = draw(d)
    rel = lambda p: str(Path(p).relative_to(out_dir))  # noqa: E731
    cmd = (f"branchspec hessian --checkpoint {ck['trained']} --compare-checkpoint {ck['init']} "
           f"--params all --batch 4 --probes {probes} --out {d}")
    numbers = {
        "branches M": trained["num_branches"],
        "parameters in the Hessian": trained["num_params"],
        "loss at initialisation": init["loss_value"],
        "loss after training": trained["loss_value"],
        "block diagonality at initialisation": init["block_diagonality"],
        "block diagonality after training": trained["block_diagonality"],
        "scale-free block diagonality, init / trained":
            f"{init['scale_free_block_diagonality']:.4f} / {trained['scale_free_block_diagonality']:.4f}",
        "eq. 14 product vs entry, max rel. error (trained)": trained["eq14"]["product_max_error"],
        "distributive factors that are zero, init / trained":
            f"{init['eq14']['distributive_zero_fraction']:.3f} / {trained['eq14']['distributive_zero_fraction']:.3f}",
        f"probe estimate (K={probes}) of block diagonality, trained": trained["probes"]["block_diagonality"],
    }
    return Section(
        key="hessian",
        title="Hessian of a branched model (§5.2, §8)",
        intro=("Exact Hessian of the L2 loss w.r.t. all parameters (w_k, b_k) of the toy model, rows and "
               "columns branch by branch, at initialisation and after training (cf. Fig. 5, panels 3-4, "
               "shown there for the classifier's first layer). Block diagonality = share of the squared "
               "Frobenius mass inside the M diagonal blocks (1 = block diagonal, about 1/M for a dense H). "
               "Inter-branch entries equal distributive x collaborative factors (eq. 14); "
               f"data: {source}."),
        numbers=numbers,
        figures=[
            Figure(rel(figs[0]), "|H| at initialisation (left) and after training (right), log scale, white "
                   "lines = branch boundaries (cf. Fig. 5, panels 3-4).", cmd),
            Figure(rel(figs[-1]), "Frobenius norms of the M x M branch blocks of H, initialisation and after "
                   "training.", cmd),
        ],
        notes=["Toy1 contains x = 0 twice: there the distributive factor dv_k/dw_k = sigma'(b_k) * x is exactly "
               "zero, so those samples add nothing to any inter-branch weight entry (eq. 14).",
               "Results: hessian/hessian.json, hessian/hessian.npz."],
    )
