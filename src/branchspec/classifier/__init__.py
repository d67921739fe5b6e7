"""The branched CIFAR-10 classifier of §6: training, sweeps over M, and the analysis of trained models.

One module per step of the experiment: ``config`` (:class:`TrainConfig`, the one definition of the
``train-classifier`` flags), ``recipe`` (schedules, flips, crops, TTA), ``train`` (the loop with exact
resume), ``evaluate`` (test loss and accuracy, gradient norms), ``runfiles`` (the files of ``RUN/`` and
the resume checks), ``sweep`` (one run per M), ``analysis`` (pure functions over branch outputs
V (M, N, C)) and ``analysis_run`` (a checkpoint → outputs, ablations, Hessians, figures' data).

The names below are re-exported lazily, so reading a config does not import the trainer. The
functions ``train`` and ``evaluate`` share their names with their modules and are reached through
them: ``branchspec.classifier.train.train``, ``branchspec.classifier.evaluate.evaluate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from branchspec.lazy import lazy_exports

if TYPE_CHECKING:
    from branchspec.classifier.analysis import (
        ablation,
        accuracy,
        branch_confidence,
        branch_ranking,
        class_means,
        covariance_summary,
        informative_pairs,
        response,
        sample_per_class,
        top_confident,
    )
    from branchspec.classifier.analysis_run import analyze, run_sweep
    from branchspec.classifier.config import TrainConfig
    from branchspec.classifier.train import (
        CSV_FIELDS,
        CheckpointError,
        NonFiniteLoss,
        load_data,
        lr_at,
        make_optimizer,
    )

_HOME = {  # name -> the module it is imported from
    **dict.fromkeys(["TrainConfig"], "config"),
    **dict.fromkeys(["lr_at", "NonFiniteLoss", "load_data", "CheckpointError", "make_optimizer", "CSV_FIELDS"], "train"),
    **dict.fromkeys(["class_means", "response", "accuracy", "branch_ranking", "ablation", "sample_per_class",
                     "informative_pairs", "top_confident", "covariance_summary", "branch_confidence"], "analysis"),
    **dict.fromkeys(["analyze", "run_sweep"], "analysis_run"),
}
__all__ = list(_HOME)


__getattr__, __dir__ = lazy_exports(__name__, _HOME, globals())
