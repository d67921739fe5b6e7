"""Demo part "toy": the two toy problems of §4.1 at the paper's size (Figs. 2–4).

Toy1 and Toy2 are each swept over M = 2…30 with 1000 random initialisations
per M at the default settings (the same as ``branchspec toy``), all networks
trained together; ``quick=True`` shrinks everything to a few seconds. The
M = 10 first-trial Toy1 model is checkpointed before and after training and
handed to the Hessian part as ``ctx["toy_checkpoints"]``.
"""

from __future__ import annotations

import time
from pathlib import Path

from branchspec.report import Figure, Section

FULL = {"branches": tuple(range(2, 31)), "trials": 1000}
QUICK = {"branches": (2, 3, 5, 10, 20), "trials": 8, "steps": 300}
FIGS = {"toy1": ("dynamics", "success_cov", "activity"), "toy2": ("activity",)}


def _cmd(problem: str, sub: str, quick: bool) -> str:
    if quick:
        return (f"branchspec toy --problem {problem} --branches 2,3,5,10,20 --trials 8 --steps 300 "
                f"--out DIR/{sub}")
    return f"branchspec toy --problem {problem} --branches 2-30 --trials 1000 --out DIR/{sub}"


def run(out_dir: Path, ctx: dict, quick: bool) -> Section:
    from branchspec.figures.toy import draw_all
    from branchspec.toy import ToyConfig, train_toy
    from branchspec.toy.io import save_models, write_results

    out_dir = Path(out_dir)
    base = out_dir / "toy"
    sizes = QUICK if quick else FULL
    docs, runs, figs = {}, {}, {}
    for problem in ("toy1", "toy2"):
        cfg = ToyConfig(problem=problem, **sizes)
        t0 = time.perf_counter()
        runs[problem] = train_toy(cfg, progress=True)
        docs[problem] = write_results(runs[problem], base / problem)
        figs[problem] = draw_all(base / problem, which=FIGS[problem])
        print(f"[demo] toy: {problem} {len(cfg.branches)} values of M × {cfg.trials} trials, "
              f"{cfg.resolved_steps} steps: {time.perf_counter() - t0:.1f} s", flush=True)
    ck = save_models(runs["toy1"], base / "models", ms=[10])[10]
    ctx["toy_checkpoints"] = {"init": str(ck["init"]), "trained": str(ck["trained"])}

    s1, s2 = docs["toy1"]["summary"], docs["toy2"]["summary"]
    p1 = {d["m"]: d for d in docs["toy1"]["per_m"]}
    p2 = {d["m"]: d for d in docs["toy2"]["per_m"]}
    m_lo, m_hi = min(p2), max(p2)
    numbers = {
        "Toy1 success rate at M=2 (%)": round(100 * p1[min(p1)]["success_rate"], 1),
        "Toy1 lowest success rate over M ≥ 10 (%)": round(100 * s1.get("min_success_rate_m_ge_10", float("nan")), 1),
        "Toy2 mean active branches over M ≥ 10 (min – max)":
            f"{s2.get('mean_active_min_m_ge_10', float('nan')):.2f} – {s2.get('mean_active_max_m_ge_10', float('nan')):.2f}",
        "Toy2 width of that band (paper: nearly constant; target ≤ 1.5)": round(s2.get("mean_active_band_m_ge_10", float("nan")), 2),
        f"Toy2 mean silent branches at M={m_lo} / M={m_hi}": f"{p2[m_lo]['mean_silent']:.2f} / {p2[m_hi]['mean_silent']:.2f}",
        "Toy1 mean |correlation| off the diagonal, M=10 examples": round(
            sum(docs["toy1"]["covariance_examples"]["mean_abs_offdiag_correlation"])
            / max(1, len(docs["toy1"]["covariance_examples"]["mean_abs_offdiag_correlation"])), 3),
        "networks trained (Toy1 + Toy2)": int(sum(len(r.net_m) for r in runs.values())),
        "Toy1 sweep training time (s)": round(runs["toy1"].seconds, 1),
        "Toy2 sweep training time (s)": round(runs["toy2"].seconds, 1),
    }
    c1, c2 = _cmd("toy1", "toy/toy1", quick), _cmd("toy2", "toy/toy2", quick)
    rel = lambda p: str(Path(p).relative_to(out_dir))  # noqa: E731
    figures = []
    if "dynamics" in figs["toy1"]:
        figures.append(Figure(rel(figs["toy1"]["dynamics"]),
                              "Fig. 2: Toy1 dynamics with M = 2 — every branch's output on each x during gradient "
                              "descent, two successful seeds (specialisation: one branch per region, the other silent).",
                              c1))
    figures.append(Figure(rel(figs["toy1"]["success_cov"]),
                          "Fig. 3: Toy1 success rate (Σ(f−y)² < 1e-4) vs the number of branches M, and ten "
                          "covariance matrices Cov = F·Fᵀ for M = 10 (loosely correlated branches).", c1))
    figures.append(Figure(rel(figs["toy2"]["activity"]),
                          "Fig. 4: Toy2 — the responses of 20 branches (left: F, * = active; middle: v_i(x)) and the "
                          "mean number of active (‖F_i‖ ≥ 10 % of the largest) and silent branches vs M.", c2))
    figures.append(Figure(rel(figs["toy1"]["activity"]),
                          "Toy1 counterpart of Fig. 4 (not in the paper): active and silent branches vs M.", c1))
    settings = docs["toy1"]["settings"]
    notes = [
        f"Both sweeps: {'QUICK smoke-test sizes' if quick else 'the paper size'} — M in {list(sizes['branches'])[:3]}…"
        f"{sizes['branches'][-1]}, {sizes['trials']} trials per M; every (M, trial) network trained together by "
        "vectorised full-batch gradient descent (branchspec.toy.train_toy).",
        f"Settings (defaults of `branchspec toy`): w, b ~ U(−{settings['init_scale']:g}, {settings['init_scale']:g}), "
        f"Leaky-ReLU slope {settings['negative_slope']:g}, learning rate {settings['lr']:g}, "
        f"{docs['toy1']['settings']['steps']} steps (Toy1) / {docs['toy2']['settings']['steps']} steps (Toy2), "
        f"success δ = {settings['delta']:g}, active fraction {settings['active_fraction']:g}.",
        "Results: DIR/toy/toy1/results.json and DIR/toy/toy2/results.json (per-M success rate, mean active / silent), "
        "traces in traces.npz; figures redrawn from these files only (branchspec.figures.toy.draw_all).",
        f"Checkpoints of the Toy1 M = 10 first trial (init and trained) for the Hessian part: {rel(ck['init'])}, "
        f"{rel(ck['trained'])}.",
    ]
    return Section(key="toy", title="Toy experiments (§4.1, Figs. 2–4)",
                   intro="M scalar Leaky-ReLU branches v_k(x) = σ(w_k x + b_k) summed (eq. 4) and trained by "
                         "gradient descent on two 4-point problems: Toy1 X={−1,0,0,1}, Y={1,.5,.5,1}; "
                         "Toy2 X={−1,0,1,2}, Y={1,.25,.5,.75}.",
                   numbers=numbers, figures=figures, notes=notes)
