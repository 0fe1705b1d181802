"""Instructions a service spends per call to another service: a figure machine noise leaves alone.

    .venv/bin/python benchmarks/instructions_per_call.py [--calls 2000]

Starts a server that answers every request at once (uvicorn and a bare ASGI app, in a process of
its own), then counts under valgrind's callgrind what the calling process spends: once for a few
warm-up calls, once for `--calls` more, 16 at a time. The difference divided by the extra calls is
what one `POST` through `ServiceClient` costs the caller (the client's thread included; the kernel
and the server are not counted), and the same for the call made straight through pyreqwest: the
gap between the two is what common/http_client.py adds (deadline, retries, request id, trace,
metrics).
"""

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.callgrind import instructions  # noqa: E402

WARM_UP_CALLS = 800
CONCURRENCY = 16
ANSWER = b'{"transaction": {"id": 1, "orderId": 12, "success": true, "amount": 100}}'


async def _answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The server's whole app: read the request, answer 201 with a small JSON body."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


def _serve(port: int) -> None:
    import uvicorn

    uvicorn.run(_answer, host="127.0.0.1", port=port, loop="uvloop", log_level="warning")


async def _call(port: int, calls: int, through: str) -> None:
    from microshop.common.http_client import HttpSession
    from microshop.common.metrics import ServiceMetrics
    from microshop.common.settings import Settings
    from microshop.common.tracing import Tracer

    session = HttpSession(Settings(), ServiceMetrics(), Tracer("bench"))
    await session.open()
    client = session.client("peer", f"http://127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/transactions"
    body = {"orderId": 12, "amount": 100, "success": True}
    headers = {
        "Content-Type": "application/json",
        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    }

    async def one_call() -> None:
        if through == "service-client":
            answer = await client.request("POST", "/transactions", json=body, idempotent=True)
            assert answer.status == 201
            return
        import orjson

        request = session.client_pool.post(url).headers(headers).body_bytes(orjson.dumps(body))
        response = await request.build().send()
        await response.bytes()
        assert response.status == 201

    async def caller(count: int) -> None:
        for _ in range(count):
            await one_call()

    shares = [calls // CONCURRENCY + (index < calls % CONCURRENCY) for index in range(CONCURRENCY)]
    await asyncio.gather(*(caller(share) for share in shares))
    await session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls measured")
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--run-calls", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--through", default="service-client", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        _serve(options.port)
        return
    if options.run_calls is not None:
        import uvloop

        uvloop.run(_call(options.port, options.run_calls, options.through))
        return

    from benchmarks.run import wait_until_answers

    from microshop.ports import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--port", str(port)], cwd=ROOT)
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/")
        for through in ("service-client", "pyreqwest"):
            run = (__file__, "--port", str(port), "--through", through, "--run-calls")
            base = instructions(*run, str(WARM_UP_CALLS))
            total = instructions(*run, str(WARM_UP_CALLS + options.calls))
            per_call = (total - base) / options.calls
            print(f"{per_call:,.0f} instructions per call through {through}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
