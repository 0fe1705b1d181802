"""Sends the same requests to the real original and to the stand-ins and reports what differs.

    flock /tmp/microshop-fixed-ports.lock .venv/bin/python -m tests.seed.compare_with_original \\
        /tmp/seed-original

The original (a copy with its npm dependencies installed) listens on the fixed ports 3000-3004,
hence the lock. Each scenario starts both shops afresh (the last one with every caller wired
to a scripted peer, which answers what the seed's own peers never did), sends its requests to
both in the same order and compares, request by request, the status, the content type, the
`Allow` and `Location` headers, the body (JSON as parsed; an HTML error page by its message, or
only by the error's name where the message is the JavaScript engine's), which services are
still alive, and what the scripted peer was sent. Exits 1 when anything differs.
"""

import argparse
import json
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.seed import SEED_PEERS, SEED_PORTS
from tests.seed.processes import start_original, start_stand_in
from tests.shops import ServiceProcess

BOTTOM_UP = ("db", "payment-service", "order-service", "api-gateway")
ANSWER_TIMEOUT_SECONDS = 3.0
DYING_SECONDS = 2.0
"""Long enough for a crashing service's peers to crash too, on a busy machine."""
ORDER = {"item": "t-shirt", "price": 100, "customer": "Gregor"}
FORM = "item=lamp&price=20&customer=Ann"
CHUNK_PAUSE_SECONDS = 0.2
LARGE_LIST_ORDERS = 1500
"""Enough orders for a list of about 100 KB: more than one chunk of a Node.js socket read."""


@dataclass(frozen=True)
class Answer:
    """What the scripted peer answers to one route; `chunks` are sent apart, a moment apart."""

    status: int = 200
    body: str = ""
    content_type: str = "application/json"
    chunks: tuple[str, ...] = ()


def answer_json(value: Any, status: int = 200, content_type: str = "application/json") -> Answer:
    return Answer(status, json.dumps(value), content_type)


NOT_FOUND = Answer(404, "<!DOCTYPE html><pre>Cannot GET</pre>", "text/html; charset=utf-8")


class ScriptedPeer:
    """Any peer of the seed's services: answers as the probe scripts, records what it was sent."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], Answer] = {}
        self.received: list[dict[str, str | None]] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                peer.respond(self)

            do_POST = do_GET

            def log_message(self, format: str, *arguments: Any) -> None:
                """Quiet: what matters is recorded in `received`."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def respond(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        self.received.append(
            {
                "request": f"{request.command} {request.path}",
                "content-type": request.headers.get("Content-Type"),
                "accept": request.headers.get("Accept"),
                "accept-encoding": request.headers.get("Accept-Encoding"),
                "body": request.rfile.read(length).decode(errors="replace"),
            }
        )
        answer = self.answers.get((request.command, request.path.split("?")[0]), NOT_FOUND)
        request.send_response(answer.status)
        request.send_header("Content-Type", answer.content_type)
        if answer.chunks:
            request.send_header("Transfer-Encoding", "chunked")
            request.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):  # a caller that gave up
                for chunk in answer.chunks:
                    data = chunk.encode()
                    request.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    request.wfile.flush()
                    time.sleep(CHUNK_PAUSE_SECONDS)
                request.wfile.write(b"0\r\n\r\n")
        else:
            data = answer.body.encode()
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)


@dataclass
class Shop:
    """One side's services by name, and how to start one again after it crashed."""

    start: "Starter"
    peer: ScriptedPeer | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    peers_of: dict[str, list[str]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.services[name].url

    def alive(self) -> list[str]:
        return [name for name, service in self.services.items() if service.process.poll() is None]

    def launch(self, name: str, peers: list[str]) -> None:
        self.services[name] = self.start(name, peers)
        self.peers_of[name] = peers

    def revive(self) -> None:
        for name, service in self.services.items():
            if service.process.poll() is not None:
                self.launch(name, self.peers_of[name])

    def stop(self, name: str) -> None:
        self.services[name].process.send_signal(signal.SIGTERM)
        self.services[name].stop()


@dataclass(frozen=True)
class Probe:
    """One request to one service of a shop."""

    service: str
    method: str
    path: str
    json: Any = None
    form: str | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    peer_answers: dict[tuple[str, str], Answer] = field(default_factory=dict)
    """What the scripted peer answers meanwhile, by method and path."""

    def __str__(self) -> str:
        sent = self.form or (json.dumps(self.json) if self.json is not None else None)
        shown = sent or (self.content[:40].decode(errors="replace") if self.content else "")
        return f"{self.method} {self.service}{self.path} {shown[:60]}".rstrip()

    def send(self, client: httpx.Client, shop: Shop) -> httpx.Response:
        headers = dict(self.headers)
        content = self.content
        if self.form is not None:
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
            content = self.form.encode()
        elif self.json is not None:
            headers.setdefault("Content-Type", "application/json")
            content = json.dumps(self.json).encode()
        return client.request(
            self.method, shop.url(self.service) + self.path, content=content, headers=headers
        )


def message_of(page: str, status: int) -> str:
    """The error page's message; for a parse error only its name, the rest is the engine's."""
    found = re.search(r"<pre>(.*?)</pre>", page, re.DOTALL)
    message = (found.group(1) if found else page).split("<br>")[0].strip()
    return message.split(":")[0] if status in (400, 413) else message


def observe(probe: Probe, client: httpx.Client, shop: Shop) -> dict[str, Any]:
    """What a client of the seed can tell about one answer, and who is still alive after it."""
    if shop.peer is not None:
        shop.revive()
        shop.peer.answers, shop.peer.received = dict(probe.peer_answers), []
    try:
        response = probe.send(client, shop)
    except httpx.TransportError as error:
        time.sleep(DYING_SECONDS)  # the answer is lost as a process ends: let them end
        return {"answer": f"no answer ({type(error).__name__})", **aftermath(shop)}
    content_type = response.headers.get("content-type", "")
    body: Any = response.text
    if "json" in content_type and body:
        try:
            body = response.json()
        except ValueError:
            body = f"not JSON: {body[:80]}"
    elif "html" in content_type and response.status_code >= 400:
        body = message_of(body, response.status_code)
    return {
        "status": response.status_code,
        "content-type": content_type,
        "allow": response.headers.get("allow"),
        "location": response.headers.get("location"),
        "body": body,
        **aftermath(shop),
    }


def aftermath(shop: Shop) -> dict[str, Any]:
    """Who is still alive, and what the scripted peer was sent."""
    seen: dict[str, Any] = {"alive": shop.alive()}
    if shop.peer is not None:
        seen["peer received"] = shop.peer.received
    return seen


def post_json(service: str, body: Any, path: str = "/orders") -> Probe:
    return Probe(service, "POST", path, json=body)


def answers_and_errors() -> Iterator[Probe]:
    """The routes, what they ignore, and what they refuse, service by service."""
    for service, path in (
        ("api-gateway", "/orders"),
        ("order-service", "/orders"),
        ("payment-service", "/transactions"),
        ("db", "/orders"),
        ("db", "/transactions"),
    ):
        yield Probe(service, "GET", path)
        for unknown in ("/healthz", "/readyz", "/metrics", "/orders/1", "/", "/status"):
            yield Probe(service, "GET", unknown)
        yield Probe(service, "GET", path + "?limit=1&after=0&status=paid&customer=Nobody")
        yield Probe(service, "GET", path.upper() + "/")
        yield Probe(service, "HEAD", path)
        yield Probe(service, "OPTIONS", path)
        yield Probe(service, "PUT", path, json=ORDER)
        yield Probe(service, "DELETE", path + "/1")
    gateway = "api-gateway"
    yield post_json(gateway, ORDER)
    yield Probe(gateway, "POST", "/orders", form=FORM)
    yield post_json(gateway, {"item": "sofa", "price": 20000, "customer": "Cy"})
    yield post_json(gateway, {"item": "pen", "price": "20.50", "customer": "Jürgen"})
    yield post_json(gateway, {"item": "cup", "price": 20.0, "customer": "Bo", "extra": [1]})
    yield Probe(gateway, "POST", "/orders", form="item[name]=hat&tags[]=a&tags[]=b&price=1&price=2")
    yield Probe(gateway, "POST", "/orders", form="item=a+b%21&customer=&novalue")
    yield post_json(gateway, [ORDER])
    yield post_json(gateway, {"price": -5})
    yield Probe(
        gateway, "POST", "/orders", content=b"item=x", headers={"Content-Type": "text/plain"}
    )
    yield Probe(
        gateway, "POST", "/orders", content=b"", headers={"Content-Type": "application/json"}
    )
    yield Probe(
        gateway,
        "POST",
        "/orders",
        content=json.dumps(ORDER).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    for service in ("api-gateway", "db"):
        yield Probe(service, "POST", "/orders", content=b"{bad", headers=json_type())
        yield Probe(service, "POST", "/orders", content=b'"a string"', headers=json_type())
        yield Probe(service, "POST", "/orders", content=b"NaN", headers=json_type())
        large = json.dumps({"item": "x" * 200_000}).encode()
        yield Probe(service, "POST", "/orders", content=large, headers=json_type())
    yield post_json("order-service", {"item": "book", "price": 12.5, "customer": "Ed"})
    yield post_json("payment-service", {"orderId": 99, "amount": 5}, "/transactions")
    yield post_json("payment-service", {"orderId": "1"}, "/transactions")
    yield post_json("db", {"item": "x", "price": None, "customer": {"name": "y"}})
    yield post_json("db", {}, "/transactions")
    yield Probe("db", "GET", "/orders")
    yield Probe("db", "GET", "/transactions")
    yield Probe("api-gateway", "GET", "/orders")


def json_type() -> dict[str, str]:
    return {"Content-Type": "application/json"}


Step = Probe | Callable[[Shop], None]
"""A request to compare, or something done to both shops between requests."""


def large_list() -> Iterator[Step]:
    """A list longer than one chunk: the callers that read only the first chunk break."""
    for number in range(LARGE_LIST_ORDERS):
        yield post_json("db", {"item": "t-shirt", "price": 100, "customer": f"customer {number}"})
    yield Probe("db", "GET", "/orders")
    yield Probe("payment-service", "GET", "/transactions")
    yield Probe("order-service", "GET", "/orders")
    yield Probe("api-gateway", "GET", "/orders")


def db_down() -> Iterator[Step]:
    """Every caller of a db that is gone: no errors handled, no timeouts."""
    yield post_json("api-gateway", ORDER)
    yield lambda shop: shop.stop("db")
    yield post_json("payment-service", {"orderId": 1}, "/transactions")
    yield post_json("order-service", ORDER)
    yield post_json("api-gateway", ORDER)
    yield Probe("api-gateway", "GET", "/orders")
    yield Probe("payment-service", "GET", "/transactions")


def in_front_of_any_peer() -> Iterator[Step]:
    """What the callers send their peers, and what they make of answers the seed never gave."""
    gateway, orders, payments = "api-gateway", "order-service", "payment-service"
    placed = {"order": {"id": 7, "status": "paid"}, "transaction": {"id": 1, "orderId": 7}}
    problem = {"type": "about:blank", "title": "Unprocessable Content", "status": 422}
    for answer in (
        answer_json(placed, 201),
        answer_json(problem, 422, "application/problem+json"),
        answer_json(placed, 500),
        NOT_FOUND,
        Answer(204),
        Answer(200, "not JSON", "text/plain"),
    ):
        yield Probe(
            gateway, "POST", "/orders", form=FORM, peer_answers={("POST", "/orders"): answer}
        )
    yield Probe(gateway, "POST", "/orders", json={"customer": "Jürgen", "tags": ["a", 1.0]})
    listed = [{"id": 1, "price": 100, "customer": "A", "status": "paid"}, {"id": 2}, {"id": 3}]
    charged = [{"id": 1, "orderId": 1, "success": False}, {"orderId": "2"}, {"orderId": 1}]
    for orders_answer, transactions_answer in (
        (answer_json(listed), answer_json(charged)),
        (Answer(body='[{"id": 1.0, "price": 2.50}]'), answer_json([{"orderId": 1}])),
        (answer_json({"items": listed}), answer_json(charged)),
        (answer_json([]), answer_json({"items": charged})),
        (answer_json([None]), answer_json([{"orderId": 1}])),
        (Answer(chunks=('[{"id": 1, ', '"price": 100}]')), answer_json(charged)),
        (NOT_FOUND, answer_json(charged)),
        (Answer(), answer_json(charged)),
    ):
        answers = {("GET", "/orders"): orders_answer, ("GET", "/transactions"): transactions_answer}
        yield Probe(gateway, "GET", "/orders", peer_answers=answers)
    for stored in (
        answer_json({"order": {"id": 7, "status": "pending"}}, 201),
        answer_json({"order": {"id": "7"}}),
        answer_json({"order": {}}),
        answer_json(problem, 422, "application/problem+json"),
        answer_json({"transaction": {"id": 1}}),
    ):
        answers = {
            ("POST", "/orders"): stored,
            ("POST", "/transactions"): answer_json({"transaction": None}, 202),
        }
        yield Probe(orders, "POST", "/orders", form=FORM, peer_answers=answers)
    prices = Answer(body='[{"id": 1, "price": 20.0}, {"id": 2, "price": "20.50"}]')
    yield Probe(orders, "GET", "/orders", peer_answers={("GET", "/orders"): prices})
    yield Probe(orders, "GET", "/orders", peer_answers={("GET", "/orders"): NOT_FOUND})
    declined = {("POST", "/transactions"): answer_json({"transaction": {"success": False}}, 201)}
    yield Probe(payments, "POST", "/transactions", form="orderId=3", peer_answers=declined)
    paged = {("GET", "/transactions"): answer_json(charged)}
    yield Probe(payments, "GET", "/transactions?limit=1000", peer_answers=paged)


@dataclass(frozen=True)
class Scenario:
    steps: Callable[[], Iterator[Step]]
    scripted_peer: bool = False
    """Whether the three callers talk to a scripted peer instead of to each other."""


SCENARIOS = {
    "answers and errors": Scenario(answers_and_errors),
    "large list": Scenario(large_list),
    "db down": Scenario(db_down),
    "in front of any peer": Scenario(in_front_of_any_peer, scripted_peer=True),
}


Starter = Callable[[str, list[str]], ServiceProcess]
"""Starts one service of a side, told its peers' `host:port`."""
Addresser = Callable[[Shop, str], str]
"""The `host:port` by which a side's services reach one of their peers."""


@contextmanager
def started(start: Starter, address: Addresser, scenario: Scenario) -> Iterator[Shop]:
    shop = Shop(start, ScriptedPeer() if scenario.scripted_peer else None)
    try:
        for name in BOTTOM_UP[1:] if shop.peer else BOTTOM_UP:
            peers = [
                shop.peer.address if shop.peer else address(shop, peer) for peer in SEED_PEERS[name]
            ]
            shop.launch(name, peers)
        yield shop
    finally:
        for service in shop.services.values():
            service.stop()
        if shop.peer is not None:
            shop.peer.server.shutdown()


def compare(original: Path, logs: Path) -> int:
    differences = 0
    with httpx.Client(timeout=ANSWER_TIMEOUT_SECONDS) as client:
        for name, scenario in SCENARIOS.items():
            print(f"== {name}")
            with (
                started(
                    lambda service, peers: start_original(service, original, logs, peers),
                    lambda shop, peer: f"localhost:{SEED_PORTS[peer]}",  # as run.sh says
                    scenario,
                ) as real,
                started(
                    lambda service, peers: start_stand_in(service, logs, peers),
                    lambda shop, peer: f"127.0.0.1:{shop.services[peer].port}",
                    scenario,
                ) as stand_in,
            ):
                for step in scenario.steps():
                    if not isinstance(step, Probe):
                        step(real)
                        step(stand_in)
                        continue
                    seen = observe(step, client, real), observe(step, client, stand_in)
                    if seen[0] == seen[1]:
                        if step.method == "GET" or name != "large list":
                            print(f"same     {step}: {short(seen[0])}")
                    else:
                        differences += 1
                        print(f"DIFFERS  {step}\n  original: {seen[0]}\n  stand-in: {seen[1]}")
    print(f"{differences} difference(s)")
    return 1 if differences else 0


def short(seen: dict[str, Any]) -> str:
    body = json.dumps(seen.get("body"), ensure_ascii=False)
    return f"{seen.get('status', seen.get('answer'))} {body[:70]} alive={len(seen['alive'])}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("original", type=Path, help="a copy of the original, npm installed")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seed-comparison-") as logs:
        sys.exit(compare(arguments.original.resolve(), Path(logs)))


if __name__ == "__main__":
    main()
