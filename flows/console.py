"""What ``medae refresh`` prints on the terminal while Prefect runs the flow.

Prefect logs a failed task or flow with its traceback. For medae's own errors (a stage failed,
the refresh is incomplete) that traceback is Prefect's machinery, not news: the message
already names the stage, the file and the problem, and ``reports/logs/<stage>.log`` holds the
stage's whole output. On the console they are one line each; the Prefect API (its UI, the
flow run's logs) keeps the traceback.
"""

from __future__ import annotations

import logging

from medae.errors import MedaeError


class MedaeErrorsInOneLine(logging.Filter):
    """Drop the traceback of a record whose exception is a :class:`MedaeError`.

    >>> import sys
    >>> try:
    ...     raise MedaeError("stage x: error: bad file")
    ... except MedaeError:
    ...     record = logging.LogRecord("p", logging.ERROR, "", 0, "failed", None, sys.exc_info())
    >>> MedaeErrorsInOneLine().filter(record), record.exc_info
    (True, None)
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], MedaeError):
            # the API handler ran first and may have cached the formatted traceback
            record.exc_info, record.exc_text = None, None
        return True


def medae_errors_in_one_line() -> None:
    """Add :class:`MedaeErrorsInOneLine` to Prefect's console handler (on the root logger,
    after the API handlers of the flow and task run loggers have seen the record)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
                isinstance(f, MedaeErrorsInOneLine) for f in handler.filters):
            handler.addFilter(MedaeErrorsInOneLine())
