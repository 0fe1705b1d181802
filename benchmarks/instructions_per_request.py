"""Instructions the db service spends inside its app per order: a figure machine noise leaves alone.

    .venv/bin/python benchmarks/instructions_per_request.py [--orders 1000] [--storage sqlite]

Runs the db service's app (memory storage unless told otherwise, JSON access logs, metrics and
tracing on) in-process, with no sockets, under valgrind's callgrind twice: once for a few warm-up
orders, once for `--orders` more. An order is what the db is sent for one: `POST /orders` with an
Idempotency-Key (from order-service), then `POST /transactions` (from payment-service), each
with the request id and trace the peers send. The difference divided by the extra orders is what
one costs in the ASGI app, its middleware and the repository, without the server, the client or
the kernel. Wall-clock figures on the shared test machines vary by 15 % from run to run;
instruction counts repeat to a fraction of a percent.
"""

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.callgrind import instructions  # noqa: E402

WARM_UP_ORDERS = 200
ORDER = orjson.dumps({"item": "t-shirt", "price": 100, "customer": "Gregor"})
TRACEPARENT = b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"


async def _place_and_pay(orders: int, storage: str) -> None:
    from microshop.common.settings import Settings
    from microshop.services.db.app import create

    app = create(Settings(storage=storage, data_dir=Path(tempfile.mkdtemp())))
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        for number in range(1, orders + 1):
            key = [(b"idempotency-key", b"order-%d" % number)]
            await _call(app, "/orders", ORDER, key)
            payment = orjson.dumps({"orderId": number, "amount": 100, "success": True})
            await _call(app, "/transactions", payment, [])


async def _call(app: object, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
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
            assert message["status"] == 201, message

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 3004),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:3004"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", b"0123456789abcdef0123456789abcdef"),
            (b"traceparent", TRACEPARENT),
            *headers,
        ],
    }
    await app(scope, receive, send)  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000, help="orders measured")
    parser.add_argument("--storage", choices=["memory", "sqlite"], default="memory")
    parser.add_argument("--run-orders", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.run_orders is not None:
        import uvloop

        from microshop.common.logs import configure_logging
        from microshop.common.settings import LogFormat

        configure_logging("db", LogFormat.JSON, "INFO")
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (open for the process's life)
        uvloop.run(_place_and_pay(options.run_orders, options.storage))
        return
    run = (__file__, "--storage", options.storage, "--run-orders")
    base = instructions(*run, str(WARM_UP_ORDERS))
    total = instructions(*run, str(WARM_UP_ORDERS + options.orders))
    per_order = (total - base) / options.orders
    print(f"{per_order:,.0f} instructions per order in the db app ({options.storage} storage)")


if __name__ == "__main__":
    main()
