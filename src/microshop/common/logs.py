"""Logs: one JSON object per line for machines, colored lines when a person watches a terminal."""

import asyncio
import logging
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from microshop.common.settings import LogFormat
from microshop.common.tracing import current_span

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

ACCESS_FIELDS = ("method", "path", "status", "duration_ms")
LEVEL_COLORS = {"DEBUG": "2", "INFO": "32", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}


class JSONFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
            "message": record.getMessage(),
        }
        span = current_span.get()
        if span is not None:
            entry["trace_id"] = span.trace_id
        for field in ACCESS_FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class ConsoleFormatter(logging.Formatter):
    """Colored lines for a person: chosen for a terminal, or by `microshop up` for its own."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        name = record.levelname
        level = f"\033[{LEVEL_COLORS.get(name, '0')}m{name:<7}\033[0m"
        message = record.getMessage()
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            message = f"{message} [{request_id}]"
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
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
        self.pending.append(line)
        if record.levelno >= logging.ERROR:
            self.flush()
            return
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


def configure_logging(service: str, log_format: LogFormat, level: str) -> None:
    if log_format is LogFormat.AUTO:
        log_format = LogFormat.CONSOLE if sys.stderr.isatty() else LogFormat.JSON
    handler = BatchingStreamHandler(sys.stderr)
    if log_format is LogFormat.JSON:
        handler.setFormatter(JSONFormatter(service))
    else:
        handler.setFormatter(ConsoleFormatter())
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
