"""``branchspec toy``: the toy experiments of §4.1 (Figs. 2–4), every (M, trial) pair at once."""

from __future__ import annotations

import time

from branchspec.commands._common import add_config_arguments, config_from_args, writable_dir

NAME = "toy"
HELP = "train the toy problems of §4.1 for a range of M, many trials each (Figs. 2-4)"
DESCRIPTION = (
    "Train M scalar Leaky-ReLU branches f(x) = Σ_k LeakyReLU(w_k x + b_k) by full-batch gradient "
    "descent on Toy1 (X={-1,0,0,1}, Y={1,.5,.5,1}) or Toy2 (X={-1,0,1,2}, Y={1,.25,.5,.75}) for every "
    "M in --branches, --trials random initialisations each, all networks vectorised together. Writes "
    "DIR/results.json (per-M success rate, mean active / silent branches, settings, covariance "
    "examples for M=10), DIR/traces.npz and the figures (paper Figs. 2-4)."
)


def add_arguments(p):
    from branchspec.experiments.toy import Config

    add_config_arguments(p, Config)  # one flag per field of experiments.toy.Config, and --out


def run(args) -> int:
    from branchspec.experiments import toy

    cfg, _ = config_from_args(args, toy.Config)
    out = writable_dir(args.out)
    t0 = time.perf_counter()
    res = toy.run(cfg, out)
    problem = cfg.problems[0]
    s = res["problems"][problem]
    print(f"[toy] {problem}: {len(cfg.branches)} values of M × {cfg.trials} trials, "
          f"{s['steps']} steps in {s['seconds']:.1f} s → {out / 'results.json'}")
    for d in s["per_m"]:
        print(f"  M={d['m']:3d}  success {100 * d['success_rate']:6.2f} %  active {d['mean_active']:5.2f}  "
              f"silent {d['mean_silent']:5.2f}")
    if res["checkpoints"]:
        print(f"[toy] {2 * len(res['checkpoints'])} checkpoints in {out / 'models'} (m<M>_init, m<M>_trained)")
    for p in s["figures"].values():
        print(f"[toy] figure {p}")
    print(f"[toy] done in {time.perf_counter() - t0:.1f} s")
    return 0
