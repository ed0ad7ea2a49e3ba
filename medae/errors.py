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
# values a cast failed on (``... values: ["p10012853"]``, to the end of the line: a value may
# hold a bracket), the CSV text it could not parse (``could not parse `...` as dtype``, over
# lines), and Arrow's quoted value (``Failed to parse string: 'p10012853'``, ``invalid value
# 'x'``). Column names and types stay: they say what to fix.
_PARSED_TEXT = re.compile(r"(parse:? )`.*?`(?= as )", re.DOTALL)
_UNCLOSED_PARSED_TEXT = re.compile(r"(parse:? )`[^`]*$")
_VALUE_LIST = re.compile(r"(values?: )\[.*$")
_QUOTED_VALUE = re.compile(r"((?:string|value):?\s*)'[^']*('|$)")


def error_reason(exc: BaseException, typed: bool = False) -> str:
    """One line saying why a library call failed, without the cell values it may quote;
    ``typed``: led by the exception's type (``KeyError: ...``), for messages that pass on
    exceptions of any kind.

    Polars and Arrow name the offending values in their messages; those can be identifiers or
    clinical values, which never belong in a log or an error (the file, column and row do).

    >>> error_reason(ValueError("conversion from `str` to `i64` failed in column 'subject_id' "
    ...                         'for 2 out of 2 values: ["a]b", "p10012853"]\\n\\nYou might'))
    "conversion from `str` to `i64` failed in column 'subject_id' for 2 out of 2 values: [...]"
    >>> error_reason(ValueError('could not parse `"10012853,SECRET\\n4,5` as dtype `i64` at '
    ...                         "column 'a' (column number 1)\\n\\nThe current offset"))
    "could not parse `...` as dtype `i64` at column 'a' (column number 1)"
    >>> error_reason(ValueError("Failed to parse string: 'p10012853' as a scalar of type int64"))
    "Failed to parse string: '...' as a scalar of type int64"
    >>> error_reason(ValueError('unable to find column "stay_id"; valid columns: ["x"]'))
    'unable to find column "stay_id"; valid columns: ["x"]'
    >>> error_reason(OSError()), error_reason(KeyError("ecg"), typed=True)
    ('OSError', "KeyError: 'ecg'")
    """
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = _PARSED_TEXT.sub(r"\1`...`", text).splitlines()[0]
    line = _UNCLOSED_PARSED_TEXT.sub(r"\1`...`", line)
    reason = _QUOTED_VALUE.sub(r"\1'...'", _VALUE_LIST.sub(r"\1[...]", line))
    return f"{type(exc).__name__}: {reason}" if typed else reason
