"""The Hessian of a branched checkpoint and its block structure (§5.2, §8, eq. 12–14, Fig. 5 panels 3–4).

``run`` loads the checkpoint (and optionally a second one of the same
model, e.g. at initialisation), takes the batch and loss its kind was
trained with (:func:`~branchspec.experiments.hessian_data.data_for`: Toy1/Toy2 with the L2
loss, or digits / CIFAR-10 with the §6 clamped cross-entropy, honouring the
run's ``clamp``), runs :class:`branchspec.hessian.HessianConfig` and saves
``hessian.json`` + ``hessian.npz`` and the figures in ``out``.

Example:
    >>> import tempfile
    >>> from branchspec.experiments import toy
    >>> d = tempfile.mkdtemp()
    >>> _ = toy.run(toy.Config(branches=(3,), trials=1, steps=20, save_models=(3,), figures=False), d)  # doctest: +ELLIPSIS
    [toy] toy1: 1 values of M × 1 trials, 20 steps: ... s
    >>> ck = toy.checkpoints(d, 3)
    >>> run(Config(checkpoint=ck["trained"], params="all", batch=4), d + "/h")["num_params"]
    6
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from branchspec.errors import BranchspecError, ConfigError
from branchspec.experiments import common
from branchspec.hessian import HessianConfig
from branchspec.hessian.analysis import METHODS
from branchspec.options import api_only, check_fields, option
from branchspec.report import Figure, Section

NAME = "hessian"
_D = HessianConfig()


@dataclass(frozen=True)
class Config:
    """Every knob of one Hessian analysis; each option is one ``branchspec hessian`` flag (the defaults those of
    :class:`~branchspec.hessian.HessianConfig`, which validates them)."""

    checkpoint: str = option("", "checkpoint (NAME, NAME.json or NAME.safetensors) of a branched model",
                             required=True, metavar="CKPT")
    compare_checkpoint: str = option("", "a second checkpoint of the same model (e.g. at initialisation) drawn "
                                         "side by side", metavar="INIT_CKPT")
    params: str = option(_D.params, "parameter subset of every branch: first-layer, last-layer, all, or "
                                    "comma-separated names / globs inside a branch (e.g. 'conv1.weight')")
    batch: int = option(_D.batch, "samples the loss is taken on", metavar="N")
    probes: int = option(_D.probes, "also estimate block norms from K random probes per block (Hessian-vector "
                                    "products); used alone when the exact Hessian is over the memory budget",
                         metavar="K")
    max_memory_gb: float = option(_D.max_memory_gb, "refuse exact Hessians whose matrices need more than G GiB "
                                                    "(never more than the memory budget, BRANCHSPEC_MEMORY_GB)",
                                  metavar="G")
    method: str = option(_D.method, "exact method: direct forward-over-reverse, eq. 13-14 blockwise, or auto",
                         choices=METHODS)
    data: str = option("", "classifier only: a cifar-10-batches-py folder instead of digits", metavar="DIR")
    seed: int = option(_D.seed, "seed of the probes and column checks")
    label: str = api_only("", "name of the checkpoint in figures (default: its file name)")
    compare_label: str = api_only("", "name of the compare checkpoint in figures")
    figures: bool = api_only(True, "draw the figures")

    def __post_init__(self) -> None:
        check_fields(self)  # choices, finite floats
        self.hessian_config()  # batch, probes, max_memory_gb: ConfigError of the field

    def hessian_config(self) -> HessianConfig:
        return HessianConfig(params=self.params, batch=self.batch, method=self.method, probes=self.probes,
                             max_memory_gb=self.max_memory_gb, seed=self.seed)


def _analyze_one(cfg: Config, path: str, field: str, label: str):
    from branchspec.branched import as_branched
    from branchspec.experiments.hessian_data import data_for
    from branchspec.hessian import select_params
    from branchspec.loading import load_model
    from branchspec.checkpoint import checkpoint_exists, checkpoint_paths

    if not checkpoint_exists(path):
        raise ConfigError(field, f"no such checkpoint: {path} (expected {checkpoint_paths(path)[1]})")
    model, state = load_model(path)
    try:
        branched = as_branched(model)
    except BranchspecError as exc:
        raise ConfigError(field, str(exc)) from None  # a checkpoint of another kind: bad input
    try:
        select_params(branched, cfg.params)
    except BranchspecError as exc:
        raise ConfigError("params", str(exc)) from None
    kind = state["model"]["kind"]
    data = data_for(kind, branched, state, cfg.batch, cfg.data or None)
    res, H = cfg.hessian_config().run(branched, data)
    with torch.no_grad():
        res["loss_value"] = data.loss_fn(branched(data.x), data.y).item()  # the loss H is taken of
    res.update(checkpoint=str(path), model_kind=kind, label=label or Path(path).name)
    return res, H


def run(cfg: Config, out) -> dict:
    """Analyse ``cfg.checkpoint`` (and ``cfg.compare_checkpoint``) and save results + figures in ``out``."""
    from branchspec.figures.hessian import draw
    from branchspec.hessian import save_results

    out = Path(out)
    res, H = _analyze_one(cfg, cfg.checkpoint, "checkpoint", cfg.label)
    cmp, Hc = None, None
    if cfg.compare_checkpoint:
        cmp, Hc = _analyze_one(cfg, cfg.compare_checkpoint, "compare_checkpoint", cfg.compare_label)
        if cmp["boundaries"] != res["boundaries"]:
            raise ConfigError("compare_checkpoint", f"its subset has {cmp['num_params']} parameters in "
                              f"{cmp['num_branches']} branches, the checkpoint {res['num_params']} in "
                              f"{res['num_branches']}")
    jp, npz = save_results(out, res, H, cmp, Hc)
    figs = draw(out) if cfg.figures else []
    summary = {"json": str(jp), "npz": str(npz) if npz else None, "figures": [str(f) for f in figs],
               "block_diagonality": res["block_diagonality"], "num_params": res["num_params"],
               "method": res["method"], "picked": res["picked"],
               "compare_block_diagonality": None if cmp is None else cmp["block_diagonality"]}
    return common.save(out, NAME, cfg, summary)


def section(out) -> Section:
    """The report section "hessian" from ``hessian.json`` and the figures a :func:`run` saved in ``out``."""
    import json

    out = Path(out)
    cfg, summary = common.load(out)
    tr = json.loads((out / "hessian.json").read_text())
    init = tr.get("compare")
    rel = lambda p: common.relative(out, p)  # noqa: E731
    k = cfg["probes"]
    cmd = (f"branchspec hessian --checkpoint {cfg['checkpoint']}"
           + (f" --compare-checkpoint {cfg['compare_checkpoint']}" if cfg["compare_checkpoint"] else "")
           + f" --params {cfg['params']} --batch {cfg['batch']} --probes {k} --out {out}")
    both = lambda key, f: (f"{init[key]:{f}} / {tr[key]:{f}}" if init else f"{tr[key]:{f}}")  # noqa: E731
    numbers = {"branches M": tr["num_branches"], "parameters in the Hessian": tr["num_params"]}
    if init:
        numbers["loss at initialisation"] = init["loss_value"]
    numbers["loss after training"] = tr["loss_value"]
    if init:
        numbers["block diagonality at initialisation"] = init["block_diagonality"]
    numbers["block diagonality after training"] = tr["block_diagonality"]
    numbers["scale-free block diagonality, init / trained"] = both("scale_free_block_diagonality", ".4f")
    if "eq14" in tr:
        numbers["eq. 14 product vs entry, max rel. error (trained)"] = tr["eq14"]["product_max_error"]
        numbers["distributive factors that are zero, init / trained"] = (
            f"{init['eq14']['distributive_zero_fraction']:.3f} / {tr['eq14']['distributive_zero_fraction']:.3f}"
            if init else f"{tr['eq14']['distributive_zero_fraction']:.3f}")
    if k:
        numbers[f"probe estimate (K={k}) of block diagonality, trained"] = tr["probes"]["block_diagonality"]
    figs = summary["figures"]
    figures = []
    if len(figs) > 1:
        figures.append(Figure(rel(figs[0]), "|H| at initialisation (left) and after training (right), log scale, "
                              "white lines = branch boundaries (cf. Fig. 5, panels 3-4).", cmd))
    if figs:
        figures.append(Figure(rel(figs[-1]), "Frobenius norms of the M x M branch blocks of H, initialisation and "
                              "after training.", cmd))
    source = ", ".join(rel(p) for p in (cfg["checkpoint"], cfg["compare_checkpoint"]) if p)
    notes = ["Results: " + ", ".join(rel(p) for p in (summary["json"], summary["npz"]) if p) + "."]
    if tr.get("model_kind") == "toy" and "Toy1" in str(tr.get("data", "Toy1")):
        notes.insert(0, "Toy1 contains x = 0 twice: there the distributive factor dv_k/dw_k = sigma'(b_k) * x is "
                        "exactly zero, so those samples add nothing to any inter-branch weight entry (eq. 14).")
    return Section(
        key=NAME, title="Hessian of a branched model (§5.2, §8)",
        intro=(f"Exact Hessian of the {tr['loss']} loss w.r.t. the {tr['params']} parameters of every branch, rows "
               "and columns branch by branch, at initialisation and after training (cf. Fig. 5, panels 3-4, "
               "shown there for the classifier's first layer). Block diagonality = share of the squared "
               "Frobenius mass inside the M diagonal blocks (1 = block diagonal, about 1/M for a dense H). "
               f"Inter-branch entries equal distributive x collaborative factors (eq. 14); checkpoints: {source}."),
        numbers=numbers, figures=figures, notes=notes)
