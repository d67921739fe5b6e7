"""The experiments of the paper, one module each: ``Config`` → ``run(cfg, out)`` → ``section(out)``.

* :mod:`~branchspec.experiments.toy` — the toy problems of §4.1 (Figs. 2–4);
* :mod:`~branchspec.experiments.hessian` — Hessian block structure (§5.2, §8, Fig. 5);
* :mod:`~branchspec.experiments.classifier` — the branched classifier of §6: train, sweep M, analyse;
* :mod:`~branchspec.experiments.gan` — the branched class-transfer GAN of §7 and its decomposition;
* :mod:`~branchspec.experiments.apps` — manipulation (App. A) and segmentation (App. F) of a decomposition.

Each module has a frozen dataclass ``Config`` holding every knob (defaults
= the command's defaults), ``run(cfg, out) -> dict`` which does the work and
writes ``out/experiment.json`` (the resolved config) next to its results
(JSON for scalars, NPZ for arrays, all through :mod:`branchspec.io`), and
``section(out) -> report.Section`` built from those saved files only.
The commands (``branchspec toy`` …) are argparse → ``Config`` → ``run``;
``branchspec demo`` is the list of small Configs in :mod:`.demo`, passed to
the same ``run`` and ``section``, so the demo cannot drift from the commands.

This floor sits above training / analysis / apps and the figures and
report, below the command line (README, layout section).
"""
