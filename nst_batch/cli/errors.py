"""The command line's own errors: one root, :class:`CliError` (the inner rings' errors reach the
CLI as theirs, and are said in its words: their settings as its flags).

::

    CliError
    ├── BadInput: a mistyped command, option or value; one line, exit code 2
    └── ServerError: the temporary Prefect server did not start; exit code 1
"""

from __future__ import annotations


class CliError(Exception):
    """Root of every error the CLI raises on purpose."""


class BadInput(CliError):
    """Raised for user errors; reported as one line, exit code 2."""


class ServerError(CliError):
    """The temporary server did not start; the message says why."""
