"""The branched class-transfer GAN of §7 (App. E): configuration, losses, training, run files.

``config`` (:class:`GanTrainConfig`, the one definition of the ``train-gan`` flags), ``losses`` (the
adversarial and R1 terms), ``train`` (:class:`GanTrainer`, :func:`train_gan`, exact resume) and
``runfiles`` (sample grids, logs, checkpoint rotation, resume checks).

The names below are re-exported lazily, so reading a config does not import the trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from branchspec.lazy import lazy_exports

if TYPE_CHECKING:
    from branchspec.gan.config import PRECISIONS, RESUMABLE_CHANGES, GanTrainConfig
    from branchspec.gan.runfiles import save_image_grid
    from branchspec.gan.train import GanTrainer, NonFiniteLossError, run_training, train_gan

_HOME = {  # name -> the module it is imported from
    **dict.fromkeys(["GanTrainConfig", "PRECISIONS", "RESUMABLE_CHANGES"], "config"),
    **dict.fromkeys(["GanTrainer", "NonFiniteLossError", "run_training", "train_gan"], "train"),
    "save_image_grid": "runfiles",
}
__all__ = list(_HOME)


__getattr__, __dir__ = lazy_exports(__name__, _HOME, globals())
