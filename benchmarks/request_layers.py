"""What a request served costs a service, layer by layer: CPU per request under steady load.

    .venv/bin/python benchmarks/request_layers.py [--rounds 4] [--duration 5] [--connections 16]

Each layer is served alone, one process on 127.0.0.1, and loaded by wrk (Debian's `wrk`) with
`POST` requests of an order's JSON that carry the headers the shop's calls carry (request id,
`traceparent`, idempotency key, user agent). The service's CPU time (user and system, from
/proc) is divided by the requests answered. Each layer adds one thing to the one before:

- `asgi`: a raw ASGI app on uvicorn (httptools, uvloop) that answers the JSON it is sent;
- `protocol`: the same app on `server.py`'s protocol (the limits on heads, bodies and
  connections, and each answer in one write);
- `service`: the app a service is (`ServiceApp`, common/asgi.py) with one route that answers the
  JSON it is sent: request id, trace, guards, faults, metrics and the JSON access line (written
  to /dev/null here, to the supervisor's pipe in the shop);
- `service+model`: that route reading the body as an `OrderCreate` and answering its dump, as
  the services' routes read what they are sent.

The layers are measured in turns, in alternating order, `--rounds` times; the medians are
printed. The calls a service makes are not here: benchmarks/instructions_per_call.py counts them.
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.cpu_per_order import cpu_seconds  # noqa: E402
from benchmarks.plumbing_floor import whole_body  # noqa: E402
from benchmarks.run import machine, wait_until_answers  # noqa: E402

from microshop.common.app import Service, create_app  # noqa: E402
from microshop.common.inputs import read_model  # noqa: E402
from microshop.common.models import OrderCreate  # noqa: E402
from microshop.common.responses import JSONResponse  # noqa: E402
from microshop.common.settings import LogFormat, Settings  # noqa: E402

LAYERS = ("asgi", "protocol", "service", "service+model")
FIRST_PORT = 3320
ORDER = '{"item": "t-shirt", "price": 100, "customer": "Gregor"}'
_QUIET = {"access_log": False, "log_config": None, "lifespan": "off"}
"""uvicorn without its access log and logging set-up, as the shop runs it, and without a lifespan,
which these apps have no use for."""
_WRK_SCRIPT = f"""
wrk.method = "POST"
wrk.body = '{ORDER}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Request-ID"] = "0123456789abcdef0123456789abcdef"
wrk.headers["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
wrk.headers["Idempotency-Key"] = "0123456789abcdef0123456789abcdef"
wrk.headers["User-Agent"] = "microshop/0"
"""


async def _echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The `asgi` and `protocol` layers: the JSON it is sent, back in an envelope."""
    if scope["type"] != "http":
        return
    body = await whole_body(receive)
    answer = orjson.dumps({"order": orjson.loads(body or b"{}")})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


class _EchoService(Service):
    """The `service` layers: a service whose routes answer what they are sent, as it came or
    read as an order."""

    name = "request-layers"

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route("/service", self.echo, methods=["POST"]),
            Route("/service+model", self.echo_order, methods=["POST"]),
        ]

    async def echo(self, request: Request) -> Response:
        return JSONResponse({"order": orjson.loads(await request.body())}, status_code=201)

    async def echo_order(self, request: Request) -> Response:
        order = await read_model(request, OrderCreate)
        return JSONResponse({"order": order.model_dump(mode="json")}, status_code=201)


def serve(layer: str, port: int) -> None:
    """Serves `layer` in this process until SIGTERM."""
    import uvicorn

    from microshop import server
    from microshop.common.logs import configure_logging

    settings = Settings(port=port, log_format=LogFormat.JSON)
    configure_logging(_EchoService.name, settings.log_format, settings.log_level)
    if layer == "asgi":
        uvicorn.run(_echo_app, port=port, loop="uvloop", http="httptools", **_QUIET)
    elif layer == "protocol":
        protocol = server.ProblemHttpToolsProtocol.configured(settings)
        uvicorn.run(_echo_app, port=port, loop="uvloop", http=protocol, **_QUIET)
    else:
        server.run(create_app(_EchoService(settings)), settings)


def cpu_per_request(
    layer: str, port: int, script: Path, duration: float, connections: int
) -> float:
    """Starts `layer`, warms it up, loads it for `duration` seconds; us of CPU per request."""
    command = [sys.executable, __file__, "--serve", layer, "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/" + (layer if layer.startswith("service") else "")
        wait_until_answers(url)
        _wrk(url, script, 1, connections)
        before = cpu_seconds(process.pid)
        requests = _wrk(url, script, duration, connections)
        return (cpu_seconds(process.pid) - before) / requests * 1e6
    finally:
        process.terminate()
        process.wait()


def _wrk(url: str, script: Path, duration: float, connections: int) -> int:
    """Requests answered with a 2xx in one run of wrk; any other answer stops the benchmark."""
    wrk = [
        "wrk",
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{duration:g}s",
        "--script",
        str(script),
        url,
    ]
    output = subprocess.run(wrk, check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise SystemExit(f"{url} did not answer every request:\n{output}")
    return int(output.split(" requests in ", 1)[0].rsplit(maxsplit=1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--serve", choices=LAYERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve is not None:
        serve(options.serve, options.port)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    figures: dict[str, list[float]] = {layer: [] for layer in LAYERS}
    with tempfile.TemporaryDirectory() as directory:
        script = Path(directory) / "post.lua"
        script.write_text(_WRK_SCRIPT)
        for round_number in range(options.rounds):
            order = LAYERS if round_number % 2 == 0 else LAYERS[::-1]
            for position, layer in enumerate(order):
                port = FIRST_PORT + position
                figure = cpu_per_request(layer, port, script, options.duration, options.connections)
                figures[layer].append(figure)
                print(f"round {round_number + 1}: {layer:14} {figure:6.1f} us per request")
    print(f"\n{machine()}, {options.connections} connections, medians of {options.rounds} rounds:")
    previous = None
    for layer in LAYERS:
        median = statistics.median(figures[layer])
        added = "" if previous is None else f" ({median - previous:+.1f})"
        print(f"{layer:14} {median:6.1f} us of CPU per request{added}")
        previous = median


if __name__ == "__main__":
    main()
