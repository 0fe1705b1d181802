"""The access line written without `logging` is the line `logging` writes, in both formats."""

import io
import json
import logging
from collections.abc import Iterator

import pytest

from microshop.common.logs import (
    BatchingStreamHandler,
    access_log,
    configure_logging,
    request_id_var,
)
from microshop.common.settings import LogFormat


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    output = io.StringIO()
    yield output
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    access_log.use(None, None)


def lines_of(output: io.StringIO) -> list[str]:
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, BatchingStreamHandler)
    handler.flush()
    return output.getvalue().splitlines()


@pytest.mark.parametrize("log_format", [LogFormat.JSON, LogFormat.CONSOLE])
def test_the_fast_access_line_is_the_logged_one(
    captured: io.StringIO, log_format: LogFormat
) -> None:
    configure_logging("db", log_format, "INFO")
    logging.getLogger().handlers[0].setStream(captured)  # type: ignore[attr-defined]
    token = request_id_var.set("request-1")
    try:
        access_log.write("POST", "/orders", 201, 0.01234)
        access_log.use(None, None)  # the same line through `logging`
        access_log.write("POST", "/orders", 201, 0.01234)
    finally:
        request_id_var.reset(token)
    fast, logged = lines_of(captured)
    if log_format is LogFormat.JSON:
        fast_entry, logged_entry = json.loads(fast), json.loads(logged)
        assert fast_entry.pop("time")[:19] == logged_entry.pop("time")[:19]
        assert fast_entry == logged_entry
        assert fast_entry["duration_ms"] == 12.34
        assert fast_entry["request_id"] == "request-1"
    else:
        assert fast[8:] == logged[8:]  # after the clock
        assert fast.endswith("POST /orders 201 12.3ms [request-1]")


def test_no_access_line_below_its_level(captured: io.StringIO) -> None:
    configure_logging("db", LogFormat.JSON, "WARNING")
    logging.getLogger().handlers[0].setStream(captured)  # type: ignore[attr-defined]
    access_log.write("GET", "/orders", 200, 0.001)
    assert lines_of(captured) == []
