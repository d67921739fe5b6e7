"""Sub-commands of the ``branchspec`` CLI.

Each module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; :mod:`branchspec.cli` (the only module reading argv)
lists them in ``COMMANDS``.
"""
