"""Errors that the CLI turns into one-line messages (never a traceback)."""


class BranchspecError(Exception):
    """Bad input or a failed run, explained in one line."""


class UsageError(BranchspecError):
    """An invalid command-line argument; the message names the argument."""
