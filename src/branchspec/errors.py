"""Errors that the CLI turns into one-line messages (never a traceback).

Each class carries the exit status the command line ends with (``exit_code``):
2 for bad input — an argument, a data file, a checkpoint — as the README
promises, 1 for a run that failed on good input (a non-finite loss, a full
disk). ``cli.main`` reads it; nothing else decides an exit status.
"""


class BranchspecError(Exception):
    """Bad input or a failed run, explained in one line (a failed run unless a subclass says otherwise)."""

    exit_code = 1


class UsageError(BranchspecError):
    """An invalid command-line argument; the message names the argument."""

    exit_code = 2


class DataError(UsageError):
    """Unreadable or malformed input data (images, CIFAR files, .npz): bad input, exit 2."""


class NonFiniteLoss(BranchspecError):
    """A loss (or the weights) became NaN/inf during training; the run stopped and its last good
    checkpoint was left untouched (classifier and GAN trainers alike)."""


class CheckpointError(UsageError):
    """A checkpoint is missing, torn, malformed, edited or of the wrong kind (one-line message naming it):
    bad input, exit 2."""


class ConfigError(BranchspecError, ValueError):
    """A bad value of one field of a config: an experiment's ``Config`` (:mod:`branchspec.experiments`)
    or a trainer's (``TrainConfig``, ``GanTrainConfig``, whose ``__post_init__`` raises it).

    ``field`` names the Config field — or the parameter of the library function that
    refused it (``resume``, ``out``, ``device``, ``procs`` …) — and ``reason`` says what is
    wrong; the message is ``"field: reason"``. A reason names any other setting by its
    field in backticks (``"pass `resume` to continue it"``). The library never spells a
    command-line flag: a command renames the field, and every setting in backticks, to
    its flag (``commands._common.flag_errors``). ``usage`` says whether that is an
    invalid argument (exit 2) or a failed run (exit 1). It is a ValueError too, as
    the configs raised before.

    Example:
        >>> e = ConfigError("procs", "must be >= 1, got 0")
        >>> e.field, str(e)
        ('procs', 'procs: must be >= 1, got 0')
    """

    def __init__(self, field: str, reason: str, usage: bool = True):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason, self.usage = field, reason, usage
        self.exit_code = 2 if usage else 1
