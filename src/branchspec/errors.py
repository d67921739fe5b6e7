"""Errors that the CLI turns into one-line messages (never a traceback)."""


class BranchspecError(Exception):
    """Bad input or a failed run, explained in one line."""


class UsageError(BranchspecError):
    """An invalid command-line argument; the message names the argument."""


class DataError(UsageError):
    """Unreadable or malformed input data (images, CIFAR files, .npz): bad input, exit 2."""


class NonFiniteLoss(BranchspecError):
    """A loss (or the weights) became NaN/inf during training; the run stopped and its last good
    checkpoint was left untouched (classifier and GAN trainers alike)."""


class CheckpointError(BranchspecError):
    """A checkpoint is missing, torn, malformed, edited or of the wrong kind (one-line message naming it)."""


class ConfigError(BranchspecError, ValueError):
    """A bad value of one field of a config: an experiment's ``Config`` (:mod:`branchspec.experiments`)
    or a trainer's (``TrainConfig``, ``GanTrainConfig``, whose ``__post_init__`` raises it).

    ``field`` names the Config field and ``reason`` says what is wrong; the
    message is ``"field: reason"``. A command renames the field to its flag
    (``commands._common.flag_errors``); ``usage`` says whether that is an
    invalid argument (exit 2) or a failed run (exit 1). It is a ValueError too, as
    the configs raised before.
    """

    def __init__(self, field: str, reason: str, usage: bool = True):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason, self.usage = field, reason, usage
