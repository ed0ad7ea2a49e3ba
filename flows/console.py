"""What ``medae refresh`` prints on the terminal while Prefect runs the flow.

Prefect logs a failed task or flow with its traceback. For medae's own errors (a stage failed,
the refresh is incomplete) that traceback is Prefect's machinery, not news: the message
already names the stage, the file and the problem, and ``reports/logs/<stage>.log`` holds the
stage's whole output. On the console they are one line each; the Prefect API (its UI, the
flow run's logs) and every other handler keep the traceback.
"""

from __future__ import annotations

import logging

from medae.errors import MedaeError


class MedaeErrorsInOneLine(logging.Formatter):
    """Format as ``inner`` does, without the traceback of a :class:`MedaeError`. The record
    itself is left as it was, for the handlers after this one.

    >>> import sys
    >>> try:
    ...     raise MedaeError("stage x: error: bad file")
    ... except MedaeError:
    ...     record = logging.LogRecord("p", logging.ERROR, "", 0, "failed", None, sys.exc_info())
    >>> MedaeErrorsInOneLine(logging.Formatter("%(message)s")).format(record)
    'failed'
    >>> record.exc_info is not None
    True
    """

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        if not (record.exc_info and isinstance(record.exc_info[1], MedaeError)):
            return self.inner.format(record)
        # the API handler ran first and may have cached the formatted traceback (exc_text)
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


def medae_errors_in_one_line() -> None:
    """Give Prefect's console handler (on the root logger) :class:`MedaeErrorsInOneLine`."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not isinstance(
                handler.formatter, MedaeErrorsInOneLine):
            handler.setFormatter(MedaeErrorsInOneLine(handler.formatter or logging.Formatter()))
