"""``branchspec toy``: the toy experiments of §4.1 (Figs. 2–4), every (M, trial) pair at once."""

from __future__ import annotations

import time

from branchspec.commands._common import at_least, int_range, writable_dir
from branchspec.errors import UsageError

NAME = "toy"
HELP = "train the toy problems of §4.1 for a range of M, many trials each (Figs. 2-4)"
DESCRIPTION = (
    "Train M scalar Leaky-ReLU branches f(x) = Σ_k LeakyReLU(w_k x + b_k) by full-batch gradient "
    "descent on Toy1 (X={-1,0,0,1}, Y={1,.5,.5,1}) or Toy2 (X={-1,0,1,2}, Y={1,.25,.5,.75}) for every "
    "M in --branches, --trials random initialisations each, all networks vectorised together. Writes "
    "DIR/results.json (per-M success rate, mean active / silent branches, settings, covariance "
    "examples for M=10), DIR/traces.npz and the figures (paper Figs. 2-4)."
)
MAX_NEURONS = 50_000_000  # trials × Σ M beyond this would not fit in memory comfortably


def add_arguments(p):
    from branchspec.toy import DEFAULT_STEPS, ToyConfig

    d = ToyConfig()
    p.add_argument("--problem", choices=["toy1", "toy2"], default="toy1", help="which toy problem (default toy1)")
    p.add_argument("--branches", default="2-30", help="values of M: a range 2-30, a list 2,4,8 or one number (default 2-30)")
    p.add_argument("--trials", type=int, default=d.trials, help=f"random initialisations per M (default {d.trials})")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--steps", type=int, default=None,
                   help=f"gradient-descent steps (default: toy1 {DEFAULT_STEPS['toy1']}, toy2 {DEFAULT_STEPS['toy2']})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--save-model", action="store_true",
                   help="also save, for every M, the first trial's initial and trained model as checkpoints in DIR/models")
    p.add_argument("--no-figures", action="store_true", help="skip drawing the figures")


def config_from_args(args):
    """Validate the arguments (one-line UsageErrors naming them) and build the experiment's :class:`Config`."""
    from branchspec.experiments.toy import Config

    ms = int_range(args.branches, "--branches")
    if ms[0] < 1:
        raise UsageError(f"--branches: every M must be >= 1, got {ms[0]}")
    at_least(args.trials, 1, "--trials")
    if args.steps is not None:
        at_least(args.steps, 1, "--steps")
    if not args.lr > 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    if args.trials * sum(ms) > MAX_NEURONS:
        raise UsageError(f"--trials/--branches: {args.trials} × ΣM = {args.trials * sum(ms)} neurons "
                         f"exceeds the limit of {MAX_NEURONS}")
    return Config(problems=(args.problem,), branches=tuple(ms), trials=args.trials, steps=args.steps or 0,
                  lr=args.lr, seed=args.seed, save_models=None if args.save_model else (),
                  figures=not args.no_figures)


def run(args) -> int:
    from branchspec.experiments import toy

    cfg = config_from_args(args)
    out = writable_dir(args.out)
    t0 = time.perf_counter()
    res = toy.run(cfg, out)
    s = res["problems"][args.problem]
    print(f"[toy] {args.problem}: {len(cfg.branches)} values of M × {cfg.trials} trials, "
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
