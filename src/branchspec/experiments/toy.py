"""The toy experiments of §4.1 (Figs. 2–4): Toy1 / Toy2 swept over M, many trials each.

``run`` trains every (M, trial) network of each problem together
(:func:`branchspec.toy.train_toy`), writes ``results.json`` + ``traces.npz``
per problem (:mod:`branchspec.toy.io`), optionally checkpoints the first
trial of some M before and after training, and draws the figures from the
saved files. With one problem its files go straight into ``out``; with
several, into ``out/<problem>/``. Checkpoints (of the first problem) go to
``out/models/m<M>_{init,trained}``.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> out = Path(tempfile.mkdtemp())
    >>> s = run(Config(branches=(2, 10), trials=4, steps=50, figures=False), out)  # doctest: +ELLIPSIS
    [toy] toy1: 2 values of M × 4 trials, 50 steps: ... s
    >>> sorted(s["problems"]), (out / "results.json").is_file()
    (['toy1'], True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from branchspec.errors import ConfigError
from branchspec.experiments import common
from branchspec.options import api_only, check_fields, option
from branchspec.report import Figure, Section
from branchspec.textlists import int_set
from branchspec.toy import DEFAULT_STEPS, PROBLEMS, ToyConfig

NAME = "toy"
_D = ToyConfig()
MAX_NEURONS = 50_000_000  # trials × Σ M beyond this would not fit in memory comfortably


def _one_problem(text: str) -> tuple[str, ...]:
    return (text,)


@dataclass(frozen=True)
class Config:
    """Every knob of a toy sweep; each option is one ``branchspec toy`` flag (defaults: :class:`ToyConfig`'s)."""

    problems: tuple[str, ...] = option((_D.problem,), "which toy problem (§4.1)", flag="--problem",
                                       choices=sorted(PROBLEMS), parse=_one_problem, default_help=_D.problem)
    branches: tuple[int, ...] = option(_D.branches, "values of M: a range 2-30, a list 2,4,8 or one number (paper "
                                                    "2-30)", parse=int_set, default_help="2-30")
    trials: int = option(_D.trials, "random initialisations per M (paper 1000)")
    steps: int | None = option(None, "gradient-descent steps",
                               default_help=", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items()))
    lr: float = option(_D.lr, "learning rate")
    seed: int = option(_D.seed, "random seed")
    save_models: tuple[int, ...] | None = option(
        (), "also save, for every M, the first trial's initial and trained model as checkpoints in DIR/models",
        flag="--save-model", const=None)  # the API: the M whose first trial is checkpointed; None = every M
    figures: bool = option(True, "skip drawing the figures (Figs. 2-4, drawn from the saved files)")
    progress: bool = api_only(True, "a progress bar")

    def __post_init__(self) -> None:
        check_fields(self)  # finite floats
        bad = [p for p in self.problems if p not in PROBLEMS]
        if bad or not self.problems:
            raise ConfigError("problems", f"must be among {sorted(PROBLEMS)}, got {list(self.problems)}")
        if not self.branches or min(self.branches) < 1:
            raise ConfigError("branches", f"every M must be >= 1, got {list(self.branches)[:8]}")
        if self.trials < 1:
            raise ConfigError("trials", f"must be >= 1, got {self.trials}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError("steps", f"must be >= 1, got {self.steps}")
        if not self.lr > 0:
            raise ConfigError("lr", f"must be > 0, got {self.lr}")
        if self.trials * sum(self.branches) > MAX_NEURONS:
            raise ConfigError("trials", f"{self.trials} × ΣM of `branches` = {self.trials * sum(self.branches)} "
                                        f"neurons exceeds the limit of {MAX_NEURONS}")

    def toy_config(self, problem: str) -> ToyConfig:
        return ToyConfig(problem=problem, branches=tuple(self.branches), trials=self.trials, steps=self.steps or 0,
                         lr=self.lr, seed=self.seed)

    def folder(self, out: Path, problem: str) -> Path:
        return Path(out) if len(self.problems) == 1 else Path(out) / problem


FIGURES = [  # (problem, figure, caption) in the report's order
    ("toy1", "dynamics", "Fig. 2: Toy1 dynamics with M = 2 — every branch's output on each x during gradient descent, "
                         "two successful seeds (specialisation: one branch per region, the other silent)."),
    ("toy1", "success_cov", "Fig. 3: Toy1 success rate (Σ(f−y)² < 1e-4) vs the number of branches M, and ten "
                            "covariance matrices Cov = F·Fᵀ for M = 10 (loosely correlated branches)."),
    ("toy2", "activity", "Fig. 4: Toy2 — the responses of 20 branches (left: F, * = active; middle: v_i(x)) and the "
                         "mean number of active (‖F_i‖ ≥ 10 % of the largest) and silent branches vs M."),
    ("toy1", "activity", "Toy1 counterpart of Fig. 4 (not in the paper): active and silent branches vs M."),
]


def run(cfg: Config, out) -> dict:
    """Train, save and draw every problem of ``cfg`` under ``out``; returns the summary (also saved)."""
    from branchspec.figures.toy import draw_all
    from branchspec.toy import train_toy
    from branchspec.toy.io import save_models, write_results

    out = Path(out)
    summary: dict = {"problems": {}, "checkpoints": {}}
    for i, problem in enumerate(cfg.problems):
        tcfg = cfg.toy_config(problem)
        folder = cfg.folder(out, problem)
        t0 = time.perf_counter()
        toy_run = train_toy(tcfg, progress=cfg.progress)
        doc = write_results(toy_run, folder)
        figs = draw_all(folder) if cfg.figures else {}
        summary["problems"][problem] = {
            "folder": str(folder), "steps": tcfg.resolved_steps, "seconds": round(toy_run.seconds, 3),
            "networks": int(len(toy_run.net_m)), "per_m": doc["per_m"],
            "figures": {k: str(p) for k, p in figs.items()},
        }
        print(f"[toy] {problem}: {len(tcfg.branches)} values of M × {tcfg.trials} trials, "
              f"{tcfg.resolved_steps} steps: {time.perf_counter() - t0:.1f} s", flush=True)
        if i == 0 and cfg.save_models != ():
            ck = save_models(toy_run, out / "models", ms=cfg.save_models)
            summary["checkpoints"] = {str(m): {k: str(p) for k, p in v.items()} for m, v in ck.items()}
    return common.save(out, NAME, cfg, summary)


def checkpoints(out, m: int = 10) -> dict[str, str]:
    """``{"init": path, "trained": path}`` of the M = ``m`` first-trial model a run under ``out`` saved."""
    return common.load(out)[1]["checkpoints"][str(m)]


def command(cfg: Config, problem: str, out: str) -> str:
    """The ``branchspec toy`` line that makes ``problem``'s part of ``cfg``."""
    line = f"branchspec toy --problem {problem} --branches {common.int_list(cfg['branches'])} --trials {cfg['trials']}"
    if cfg["steps"]:
        line += f" --steps {cfg['steps']}"
    return line + f" --out {out}"


def section(out) -> Section:
    """The report section "toy" from the files a :func:`run` saved under ``out`` (Figs. 2–4)."""
    from branchspec.toy.io import load_results

    out = Path(out)
    cfg, summary = common.load(out)
    probs = summary["problems"]
    docs = {p: load_results(s["folder"])[0] for p, s in probs.items()}
    rel = lambda p: common.relative(out, p)  # noqa: E731
    numbers: dict = {}
    if "toy1" in docs:
        s1, p1 = docs["toy1"]["summary"], {d["m"]: d for d in docs["toy1"]["per_m"]}
        cov = docs["toy1"]["covariance_examples"]["mean_abs_offdiag_correlation"]
        numbers["Toy1 success rate at M=2 (%)"] = round(100 * p1[min(p1)]["success_rate"], 1)
        numbers["Toy1 lowest success rate over M ≥ 10 (%)"] = round(
            100 * s1.get("min_success_rate_m_ge_10", float("nan")), 1)
    if "toy2" in docs:
        s2, p2 = docs["toy2"]["summary"], {d["m"]: d for d in docs["toy2"]["per_m"]}
        m_lo, m_hi = min(p2), max(p2)
        numbers["Toy2 mean active branches over M ≥ 10 (min – max)"] = (
            f"{s2.get('mean_active_min_m_ge_10', float('nan')):.2f} – {s2.get('mean_active_max_m_ge_10', float('nan')):.2f}")
        numbers["Toy2 width of that band (paper: nearly constant; target ≤ 1.5)"] = round(
            s2.get("mean_active_band_m_ge_10", float("nan")), 2)
        numbers[f"Toy2 mean silent branches at M={m_lo} / M={m_hi}"] = (
            f"{p2[m_lo]['mean_silent']:.2f} / {p2[m_hi]['mean_silent']:.2f}")
    if "toy1" in docs:
        numbers["Toy1 mean |correlation| off the diagonal, M=10 examples"] = round(sum(cov) / max(1, len(cov)), 3)
    numbers[f"networks trained ({' + '.join(p.capitalize() for p in probs)})"] = sum(s["networks"] for s in probs.values())
    for p, s in probs.items():
        numbers[f"{p.capitalize()} sweep training time (s)"] = round(s["seconds"], 1)
    cmds = {p: command(cfg, p, f"DIR/{rel(s['folder'])}") for p, s in probs.items()}
    figs = {p: s["figures"] for p, s in probs.items()}
    figures = [Figure(rel(figs[p][name]), caption, cmds[p]) for p, name, caption in FIGURES
               if name in figs.get(p, {})]
    first = docs[next(iter(docs))]
    st = first["settings"]
    paper = cfg["trials"] >= 1000 and list(cfg["branches"]) == list(range(2, 31))
    ms = list(cfg["branches"])
    notes = [
        f"{'All sweeps' if len(docs) > 1 else 'The sweep'}: {'the paper size' if paper else 'QUICK smoke-test sizes'}"
        f" — M in {ms[:3]}…{ms[-1]}, {cfg['trials']} trials per M; every (M, trial) network trained together by "
        "vectorised full-batch gradient descent (branchspec.toy.train_toy).",
        f"Settings (defaults of `branchspec toy`): w, b ~ U(−{st['init_scale']:g}, {st['init_scale']:g}), "
        f"Leaky-ReLU slope {st['negative_slope']:g}, learning rate {st['lr']:g}, "
        + " / ".join(f"{d['settings']['steps']} steps ({p.capitalize()})" for p, d in docs.items())
        + f", success δ = {st['delta']:g}, active fraction {st['active_fraction']:g}.",
        "Results: " + " and ".join(f"DIR/{rel(s['folder'])}/results.json" for s in probs.values())
        + " (per-M success rate, mean active / silent), traces in traces.npz; figures redrawn from these files only "
        "(branchspec.figures.toy.draw_all).",
    ]
    for m, ck in summary["checkpoints"].items():
        notes.append(f"Checkpoints of the {next(iter(probs)).capitalize()} M = {m} first trial (init and trained): "
                     f"{rel(ck['init'])}, {rel(ck['trained'])}.")
    return Section(key=NAME, title="Toy experiments (§4.1, Figs. 2–4)",
                   intro="M scalar Leaky-ReLU branches v_k(x) = σ(w_k x + b_k) summed (eq. 4) and trained by "
                         "gradient descent on two 4-point problems: Toy1 X={−1,0,0,1}, Y={1,.5,.5,1}; "
                         "Toy2 X={−1,0,1,2}, Y={1,.25,.5,.75}.",
                   numbers=numbers, figures=figures, notes=notes)
