"""Exceptions that the CLI turns into exit codes and one-line messages.

``MedaeError`` (exit 1) is a data or pipeline problem; ``UsageError`` (exit 2) is a problem with
what the user asked for (bad option, unknown stage, invalid params file).
"""


class MedaeError(Exception):
    """A data or pipeline error: the CLI prints ``error: <message>`` and exits 1."""

    exit_code = 1


class DataError(MedaeError):
    """Input data that cannot be processed; the message names the file and the problem."""


class UsageError(MedaeError):
    """A usage or configuration error: the CLI exits 2."""

    exit_code = 2


class ConfigError(UsageError):
    """An invalid params file or ``--set`` override; the message names the key and the file."""
