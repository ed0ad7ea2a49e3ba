"""Exceptions that the CLI turns into exit codes and one-line messages.

``MedaeError`` (exit 1) is a data or pipeline problem; ``UsageError`` (exit 2) is a problem with
what the user asked for (bad option, unknown stage, invalid params file).
"""

import re


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


# What libraries put in their messages that may be a cell's content: Polars' list of the
# values that failed (``... values: ["p10012853"]``) and Arrow's parse errors
# (``Failed to parse string: 'p10012853' as ...``).
_VALUE_LIST = re.compile(r"\[[^\[\]]*\]")
_QUOTED_VALUE = re.compile(r"(string:?\s*)'[^']*'")


def error_reason(exc: BaseException) -> str:
    """One line saying why a library call failed, without the cell values it may quote.

    Polars and Arrow name the offending values in their messages; those can be identifiers or
    clinical values, which never belong in a log or an error (the file, column and row do).

    >>> error_reason(ValueError("conversion from `str` to `i64` failed in column 'subject_id' "
    ...                         'for 1 out of 2 values: ["p10012853"]\\n\\nThis error occurred'))
    "conversion from `str` to `i64` failed in column 'subject_id' for 1 out of 2 values: [...]"
    >>> error_reason(ValueError("Failed to parse string: 'p10012853' as a scalar of type int64"))
    "Failed to parse string: '...' as a scalar of type int64"
    >>> error_reason(OSError())
    'OSError'
    """
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0]
    return _QUOTED_VALUE.sub(r"\1'...'", _VALUE_LIST.sub("[...]", line))
