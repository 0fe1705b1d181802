"""Instructions a service spends inside its app per request: a figure machine noise leaves alone.

    .venv/bin/python benchmarks/instructions_per_request.py [--requests 1000]

Runs the db service's app (memory storage, JSON access logs, metrics and tracing on) in-process,
with no sockets, under valgrind's callgrind twice: once for a few warm-up pairs of requests
(`POST /orders`, then `GET /orders/1`), once for `--requests` more. The difference divided by the
extra pairs is what one pair costs in the ASGI app, its middleware and the repository, without the
server, the client or the kernel. Wall-clock figures on the shared test machines vary by 15 % from
run to run; instruction counts repeat to a fraction of a percent.
"""

import argparse
import asyncio
import contextlib
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

WARM_UP_PAIRS = 200
ORDER = orjson.dumps({"item": "t-shirt", "price": 100, "customer": "Gregor"})


async def _place_and_read(pairs: int) -> None:
    from microshop.common.settings import Settings
    from microshop.services.db.app import create

    app = create(Settings(storage="memory", data_dir=Path(tempfile.mkdtemp())))
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        for _ in range(pairs):
            await _call(app, "POST", "/orders", ORDER)
            await _call(app, "GET", "/orders/1", b"")


async def _call(app: object, method: str, path: str, body: bytes) -> None:
    delivered = False

    async def receive() -> dict[str, object]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] in (200, 201), message

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 3004),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:3004"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    await app(scope, receive, send)  # type: ignore[operator]


def _instructions(pairs: int) -> int:
    """Instructions of a whole run of `pairs` pairs, as callgrind counts them."""
    run = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--run-pairs",
            str(pairs),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    collected = re.search(r"Collected : (\d+)", run.stderr)
    assert collected, run.stderr[-2000:]
    return int(collected.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="pairs measured")
    parser.add_argument("--run-pairs", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.run_pairs is not None:
        import uvloop

        from microshop.common.logs import configure_logging
        from microshop.common.settings import LogFormat

        configure_logging("db", LogFormat.JSON, "INFO")
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (open for the process's life)
        uvloop.run(_place_and_read(options.run_pairs))
        return
    base = _instructions(WARM_UP_PAIRS)
    total = _instructions(WARM_UP_PAIRS + options.requests)
    per_pair = (total - base) / options.requests
    print(f"{per_pair:,.0f} instructions per POST /orders + GET /orders/1 in the db app")


if __name__ == "__main__":
    main()
