"""Where the library's WARNINGs and ERRORs go when the program configured no logging: stderr.

The library reports failures it does not raise (every attempt failed, an answer was cut off, a
cache file was set aside) on the "openai_utils" logger. A library usually adds a NullHandler
and leaves output to the application, but then a script or notebook that never configured
logging sees nothing at all: the NullHandler also silences Python's last-resort handler. So
instead the package logger carries `StderrFallbackHandler`, which prints WARNING and above as
one line each (``openai_utils WARNING: ...``) to the current `sys.stderr` (a notebook's cell
output, pytest's capture) only while nobody else handles them:

* the root logger has no handlers (no `logging.basicConfig`, no `dictConfig`, no pytest), and
* the "openai_utils" logger has no handler but this one.

Once the program configures logging either way, this handler steps aside, so nothing prints
twice. Other libraries' loggers (httpx, openai) are left alone. To silence or route the lines,
see docs/logging.md.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LOGGER_NAME", "StderrFallbackHandler", "install_fallback_handler"]

LOGGER_NAME = "openai_utils"


class StderrFallbackHandler(logging.Handler):
    """One line per WARNING/ERROR on stderr, only while the program configured no logging."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        if self._handled_elsewhere(record):
            return
        stream = sys.stderr  # looked up each time: notebooks and test runners replace it
        if stream is None:  # pythonw, or a daemon with stderr closed
            return
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # a broken stream must not break the call that logged
            self.handleError(record)

    def format(self, record: logging.LogRecord) -> str:
        """``openai_utils WARNING: message``; one line, so tracebacks and extra lines are folded in."""
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message = f"{message} ({type(error).__name__}: {error})"
        return f"{record.name} {record.levelname}: " + " ".join(message.split("\n"))

    def _handled_elsewhere(self, record: logging.LogRecord) -> bool:
        if logging.getLogger().handlers:
            return True
        package = logging.getLogger(LOGGER_NAME)
        return any(handler is not self for handler in package.handlers)


def install_fallback_handler() -> StderrFallbackHandler:
    """Attach the fallback handler to the package logger once (idempotent across re-imports)."""
    package = logging.getLogger(LOGGER_NAME)
    for handler in package.handlers:
        if type(handler).__name__ == StderrFallbackHandler.__name__:
            return handler  # type: ignore[return-value]
    handler = StderrFallbackHandler()
    package.addHandler(handler)
    return handler
