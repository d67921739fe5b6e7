"""Errors that the CLI turns into one-line messages (never a traceback)."""


class BranchspecError(Exception):
    """Bad input or a failed run, explained in one line."""


class UsageError(BranchspecError):
    """An invalid command-line argument; the message names the argument."""


class DataError(UsageError):
    """Unreadable or malformed input data (images, CIFAR files, .npz): bad input, exit 2."""
