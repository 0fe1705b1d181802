"""The floor of the shop's plumbing: an order's exchanges between services and nothing else.

    .venv/bin/python benchmarks/plumbing_floor.py --seed-dir DIR [--rounds 3] [--duration 15]

An order is five requests served and four calls between services: the gateway calls
order-service, which calls db and then payment-service, which calls db. This starts that chain
with services that do nothing but the exchanges: each reads the JSON it is sent, makes its calls
with pyreqwest as the shop does, and answers JSON (db numbers what it is sent and stores nothing).
No validation, access log, metrics, tracing, storage or protections: what is left is the HTTP
server, the event loop, the client and the kernel.

The chain runs twice, on the two servers measured for the shop: as raw ASGI apps on uvicorn
(httptools, uvloop), the shop's server without Starlette and the rest, and as RSGI apps on
Granian (in the `bench` extra). Both chains, microshop and the seed are loaded in turns at 1 and
64 clients by `microshop bench`, as benchmarks/run.py loads microshop and the seed, and each is
reported against the seed: how near the shop could come to its targets (docs/performance.md) if
everything but the plumbing cost nothing. The table is printed, and kept with every round's
figures in docs/plumbing-floor-results.json.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from pyreqwest.client import Client, ClientBuilder

from microshop.sandbox.processes import parent_of

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.run import (  # noqa: E402
    SEED,
    Microshop,
    Seed,
    against_seed,
    load_in_turns,
    machine,
    median_run,
    wait_until_answers,
)

RESULTS = ROOT / "docs" / "plumbing-floor-results.json"
SERVERS = ("uvicorn", "granian")
FIRST_PORT = 3300
CHAIN = {  # role: the roles it calls, and the port it listens on after FIRST_PORT
    "db": ((), 4),
    "payment-service": (("db",), 1),
    "order-service": (("db", "payment-service"), 2),
    "api-gateway": (("order-service",), 0),
}
_JSON_HEADER = ("content-type", "application/json")
_JSON_HEADER_ASGI = [(b"content-type", b"application/json")]


class _Exchanges:
    """What one service of the chain does with a request: its calls, and nothing else."""

    def __init__(self, role: str, peers: dict[str, str]) -> None:
        self.role = role
        self.peers = peers
        self.next_id = 0
        self._client: Client | None = None

    async def call(self, peer: str, path: str, document: object) -> Any:
        if self._client is None:  # made on the event loop that uses it
            # Idle connections dropped before the peer's keep-alive ends (5 s), as the shop does.
            builder = ClientBuilder().max_connections(256)
            self._client = builder.pool_idle_timeout(timedelta(seconds=4)).build()
        request = self._client.post(self.peers[peer] + path).timeout(timedelta(seconds=10))
        request = request.header("content-type", "application/json")
        response = await request.body_bytes(orjson.dumps(document)).build().send()
        return orjson.loads(bytes(await response.bytes()))

    async def answer(self, method: str, path: str, body: bytes) -> bytes:
        if method != "POST":
            return b"{}"
        document = orjson.loads(body)
        if self.role == "db":
            self.next_id += 1
            if path == "/orders":
                order = {**document, "id": self.next_id, "status": "pending"}
                return orjson.dumps({"order": order, "transaction": None})
            transaction = {**document, "id": self.next_id, "success": True}
            return orjson.dumps({"transaction": transaction})
        if self.role == "payment-service":
            return orjson.dumps(await self.call("db", "/transactions", document))
        if self.role == "order-service":
            order = (await self.call("db", "/orders", document))["order"]
            charge = {"orderId": order["id"], "amount": order["price"]}
            charged = await self.call("payment-service", "/transactions", charge)
            paid = {**order, "status": "paid"}
            return orjson.dumps({"order": paid, "transaction": charged["transaction"]})
        return orjson.dumps(await self.call("order-service", "/orders", document))


def _exchanges_from_environment() -> _Exchanges:
    role = os.environ["FLOOR_ROLE"]
    return _Exchanges(role, orjson.loads(os.environ["FLOOR_PEERS"]))


# Set in the chain's processes, which `Chain` starts with their role and peers in the environment.
_exchanges = _exchanges_from_environment() if "FLOOR_ROLE" in os.environ else None


async def whole_body(receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes:
    """A request's body, from every `http.request` message an ASGI server sends for it."""
    body = b""
    more_body = True
    while more_body:
        message = await receive()
        body += message.get("body", b"")
        more_body = message.get("more_body", False)
    return body


async def asgi_app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    assert _exchanges is not None and scope["type"] == "http"
    answer = await _exchanges.answer(scope["method"], scope["path"], await whole_body(receive))
    await send({"type": "http.response.start", "status": 201, "headers": _JSON_HEADER_ASGI})
    await send({"type": "http.response.body", "body": answer})


async def rsgi_app(scope: Any, protocol: Any) -> None:
    assert _exchanges is not None
    answer = await _exchanges.answer(scope.method, scope.path, await protocol())
    protocol.response_bytes(201, [_JSON_HEADER], answer)


def serve(server: str, port: int) -> None:
    """Runs one service of the chain (its role and peers from the environment) until stopped."""
    if server == "uvicorn":
        import uvicorn

        uvicorn.run(
            asgi_app,
            host="127.0.0.1",
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="off",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            log_level="warning",
        )
        return
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels

    Granian(
        "benchmarks.plumbing_floor:rsgi_app",
        address="127.0.0.1",
        port=port,
        interface=Interfaces.RSGI,
        loop=Loops.uvloop,
        workers=1,
        log_level=LogLevels.warning,
        working_dir=ROOT,
    ).serve()


def _process_tree(pid: int) -> list[int]:
    """The process and its descendants (Granian serves from a worker process of its own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    tree, waiting = [], [pid]
    while waiting:
        tree.append(waiting.pop())
        waiting.extend(children.get(tree[-1], []))
    return tree


class Chain:
    """The four services of the chain on one server, on ports from FIRST_PORT on."""

    verify = False  # nothing is stored, so nothing can be read back

    def __init__(self, server: str, port_offset: int) -> None:
        self.server = server
        self.name = f"plumbing only ({server})"
        self.ports = {role: FIRST_PORT + port_offset + slot for role, (_, slot) in CHAIN.items()}
        self.url = f"http://127.0.0.1:{self.ports['api-gateway']}"

    def __enter__(self) -> "Chain":
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        for role, (calls, _) in CHAIN.items():
            peers = {peer: f"http://127.0.0.1:{self.ports[peer]}" for peer in calls}
            environment = {
                **os.environ,
                "FLOOR_ROLE": role,
                "FLOOR_PEERS": orjson.dumps(peers).decode(),
                "PYTHONPATH": str(ROOT),
            }
            self.processes[role] = subprocess.Popen(
                [sys.executable, __file__, "--serve", self.server, "--port", str(self.ports[role])],
                env=environment,
            )
        try:
            for port in self.ports.values():
                wait_until_answers(f"http://127.0.0.1:{port}/")
        except BaseException:
            self.__exit__()
            raise
        self.pids = {
            f"{role}{'' if index == 0 else f' ({index + 1})'}": pid
            for role, process in self.processes.items()
            for index, pid in enumerate(_process_tree(process.pid))
        }
        return self

    def __exit__(self, *exception: object) -> None:
        for process in self.processes.values():
            process.terminate()
            process.wait(30)


def report(results: dict[str, list[list[dict[str, Any]]]], levels: list[int]) -> str:
    lines = [
        "| system | clients | orders/s | p50 ms | CPU us per order | errors | orders/s, / seed "
        "| p50, seed / it | CPU per order, seed / it |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, rounds in results.items():
        for index, level in enumerate(levels):
            run = median_run([each_round[index] for each_round in rounds])
            ratio = against_seed(rounds, results[SEED], index)
            lines.append(
                f"| {name} | {level} | {run['orders_per_second']:,.0f} "
                f"| {run['latency_ms']['p50']:.2f} | {run['cpu_us_per_order']['all']:,} "
                f"| {sum(run['errors'].values())} | {ratio['orders_per_second']:.2f}x "
                f"| {ratio['p50']:.2f}x | {ratio['cpu_per_order']:.2f}x |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed-dir", type=Path, help="a checkout of the seed's Node.js demo")
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(options.serve, options.port)
        return
    if options.seed_dir is None:
        parser.error("--seed-dir is needed: every figure is a ratio to the seed's")
    levels = [int(level) for level in options.concurrency.split(",")]
    systems: list[Microshop | Seed | Chain] = [
        Microshop(),
        Seed(options.seed_dir),
        *(Chain(server, 10 * index) for index, server in enumerate(SERVERS)),
    ]
    with contextlib.ExitStack() as running:
        for system in systems:
            running.enter_context(system)
        results = load_in_turns(systems, levels, options.duration, options.rounds)
    table = report(results, levels)
    print(table)
    recorded = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "duration_seconds": options.duration,
        "rounds": results,
        "table": table,
    }
    RESULTS.write_text(json.dumps(recorded, indent=2) + "\n")


if __name__ == "__main__":
    main()
