"""Logs: one JSON object per line for machines, colored lines when a person watches a terminal."""

import asyncio
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any, TextIO

import orjson

from microshop.common.settings import LogFormat
from microshop.common.tracing import current_span

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

ACCESS_FIELDS = ("method", "path", "status", "duration_ms")
LEVEL_COLORS = {"DEBUG": "2", "INFO": "32", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}


def _hundredths(milliseconds: float) -> float:
    """A duration to 0.01 ms, by binary arithmetic: `round(x, 2)` goes through decimal text and
    costs several times as much (the two may differ on a last digit that is a half)."""
    return round(milliseconds * 100) / 100


class JSONFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self._second: tuple[int, str] = (-1, "")
        """The last second a line was logged in, and its date and time of day as text."""

    def format(self, record: logging.LogRecord) -> str:
        entry = self._entry(
            record.created,
            record.levelname.lower(),
            getattr(record, "request_id", None) or request_id_var.get(),
            record.getMessage(),
        )
        for field in ACCESS_FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()

    def format_access(self, method: str, path: str, status: int, duration_ms: float) -> str:
        """The line `format` makes of an access record, made without one."""
        entry = self._entry(
            time.time(),
            "info",
            request_id_var.get(),
            f"{method} {path} {status} {duration_ms:.1f}ms",
        )
        entry["method"] = method
        entry["path"] = path
        entry["status"] = status
        entry["duration_ms"] = _hundredths(duration_ms)
        return orjson.dumps(entry).decode()

    def _entry(
        self, created: float, level: str, request_id: str | None, message: str
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "time": self._timestamp(created),
            "level": level,
            "service": self.service,
            "request_id": request_id,
            "message": message,
        }
        span = current_span.get()
        if span is not None:
            entry["trace_id"] = span.trace_id
        return entry

    def _timestamp(self, created: float) -> str:
        """ISO 8601 in UTC, to the millisecond (truncated), in `datetime.isoformat`'s format; the
        date and time of day are formatted once a second, since a busy service logs hundreds a
        second. The second and its text are replaced together, for lines logged from threads."""
        second = int(created)
        cached_second, text = self._second
        if second != cached_second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return text + _MILLISECOND_SUFFIXES[int((created - second) * 1000)]


_MILLISECOND_SUFFIXES = [f".{millisecond:03d}+00:00" for millisecond in range(1000)]


class ConsoleFormatter(logging.Formatter):
    """Colored lines for a person: chosen for a terminal, or by `microshop up` for its own."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        line = self._line(record.created, record.levelname, record.getMessage(), request_id)
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line

    def format_access(self, method: str, path: str, status: int, duration_ms: float) -> str:
        message = f"{method} {path} {status} {duration_ms:.1f}ms"
        return self._line(time.time(), "INFO", message, request_id_var.get())

    def _line(self, created: float, level_name: str, message: str, request_id: str | None) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(created))
        level = f"\033[{LEVEL_COLORS.get(level_name, '0')}m{level_name:<7}\033[0m"
        if request_id:
            message = f"{message} [{request_id}]"
        return f"{clock} {level} {message}"


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes the lines logged during one turn of the event loop together, within 50 ms.

    One write per line was a fifth of a busy service's time (a system call each); lines logged
    outside the event loop, and every error, are written at once.
    """

    DELAY_SECONDS = 0.05

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.pending: list[str] = []
        self.scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.ERROR:
            self.pending.append(line)
            self.flush()
            return
        self.write_line(line)

    def write_line(self, line: str) -> None:
        """Queues a line that is already formatted and ends with the terminator."""
        self.pending.append(line)
        if not self.scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self.scheduled = True
            loop.call_later(self.DELAY_SECONDS, self.flush)

    def flush(self) -> None:
        self.acquire()
        try:
            self.scheduled = False
            if self.pending:
                self.stream.write("".join(self.pending))
                self.pending.clear()
                self.stream.flush()
        finally:
            self.release()


class AccessLog:
    """The line every request leaves, written as the `microshop.access` logger would write it,
    but without making a `logging.LogRecord`: `logging` costs about 25 us a line (the record, the
    handler's lock, the formatter), a third of what a small request costs inside a service.
    Until `configure_logging` has run (an app built in a test, say), lines go through `logging`."""

    def __init__(self) -> None:
        self._logger = logging.getLogger("microshop.access")
        self._handler: BatchingStreamHandler | None = None
        self._formatter: JSONFormatter | ConsoleFormatter | None = None

    def use(
        self,
        handler: BatchingStreamHandler | None,
        formatter: JSONFormatter | ConsoleFormatter | None,
    ) -> None:
        """Writes through `handler` with `formatter` from now on; None: through `logging`."""
        self._handler = handler
        self._formatter = formatter

    def write(self, method: str, path: str, status: int, seconds: float) -> None:
        if not self._logger.isEnabledFor(logging.INFO):
            return
        duration_ms = seconds * 1000
        if self._handler is None or self._formatter is None:
            self._logger.info(
                "%s %s %d %.1fms",
                method,
                path,
                status,
                duration_ms,
                extra={
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": _hundredths(duration_ms),
                },
            )
            return
        line = self._formatter.format_access(method, path, status, duration_ms)
        self._handler.write_line(line + self._handler.terminator)


access_log = AccessLog()


def configure_logging(service: str, log_format: LogFormat, level: str) -> None:
    if log_format is LogFormat.AUTO:
        log_format = LogFormat.CONSOLE if sys.stderr.isatty() else LogFormat.JSON
    handler = BatchingStreamHandler(sys.stderr)
    formatter: JSONFormatter | ConsoleFormatter = (
        JSONFormatter(service) if log_format is LogFormat.JSON else ConsoleFormatter()
    )
    handler.setFormatter(formatter)
    access_log.use(handler, formatter)
    # Skip what no line of ours prints: caller lookup, thread and process names.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's start and stop lines repeat what each service says itself; Alembic lists its
    # plugins at every migration.
    for noisy in ("uvicorn.access", "uvicorn.error", "alembic.runtime.plugins", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
