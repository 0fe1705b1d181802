"""Clients that send too much or too slowly, against a real service process, over raw sockets: each
is answered (431, 408, 503 as problem+json) and its connection closed, while others are served."""

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.shops import ServiceProcess, start_service

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
SLACK_SECONDS = 1.5
"""How much later than its deadline an answer may come on a busy machine."""
ORDER = {"item": "t-shirt", "price": 100, "customer": "Gregor"}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float
    """From the start of the request until the connection was closed."""

    def problem(self) -> dict[str, object]:
        assert self.headers["content-type"] == "application/problem+json"
        problem: dict[str, object] = json.loads(self.body)
        assert problem["status"] == self.status
        return problem


def parse(raw: bytes, seconds: float) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
    return Answer(int(status_line.split()[1]), headers, body, seconds)


def receive(connection: socket.socket) -> bytes:
    """What arrived next; `b""` once the server closed the connection, also when it closed it with
    some of what was sent unread (a reset, after its answer)."""
    try:
        return connection.recv(65536)
    except ConnectionResetError:
        return b""


def read_until_closed(connection: socket.socket, started: float, timeout: float) -> Answer:
    """Everything the server sends until it closes the connection; fails after `timeout`."""
    connection.settimeout(timeout)
    raw = b""
    try:
        while chunk := receive(connection):
            raw += chunk
    except TimeoutError:
        pytest.fail(f"the connection was still open after {timeout} s, having sent {raw[:200]!r}")
    return parse(raw, time.monotonic() - started)


def send_until_refused(connection: socket.socket, first: bytes, more: bytes, total: int) -> None:
    """Sends `first`, then `more` until `total` bytes are sent or the server stops reading."""
    sent = 0
    try:
        connection.sendall(first)
        while sent < total:
            connection.sendall(more)
            sent += len(more)
    except OSError:  # reset: the server closed the connection with some of this unread
        pass


def memory_kib(pid: int, field: str) -> int:
    """`VmRSS` (resident now) or `VmHWM` (the most ever resident) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise KeyError(field)


def assert_served(service: ServiceProcess) -> None:
    started = time.monotonic()
    assert httpx.post(service.url + "/orders", json=ORDER, timeout=5).status_code == 201
    assert httpx.get(service.url + "/orders", timeout=5).status_code == 200
    assert time.monotonic() - started < 2


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    service = start_service(
        "db",
        tmp_path_factory.mktemp("slow-clients"),
        {
            "MICROSHOP_STORAGE": "memory",
            "MICROSHOP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
            "MICROSHOP_BODY_TIMEOUT": str(BODY_TIMEOUT),
        },
    )
    yield service
    assert service.stop() == 0, service.output()[-4000:]


def test_huge_unfinished_headers_get_431_and_hold_no_memory(db: ServiceProcess) -> None:
    """Eight connections each sending a 16 MB header that never ends grew the gateway by 150 MB,
    and were never closed."""
    resident_before = memory_kib(db.process.pid, "VmRSS")

    def attack() -> Answer:
        with socket.create_connection(("127.0.0.1", db.port), timeout=10) as connection:
            started = time.monotonic()
            first = b"GET /orders HTTP/1.1\r\nHost: db\r\nX-Huge: "
            send_until_refused(connection, first, b"a" * 65536, 16 * 1024 * 1024)
            return read_until_closed(connection, started, timeout=5)

    with ThreadPoolExecutor(8) as pool:
        attacks = [pool.submit(attack) for _ in range(8)]
        assert_served(db)
        answers = [attack.result() for attack in attacks]

    assert [answer.status for answer in answers] == [431] * 8
    assert "16384 bytes" in str(answers[0].problem()["detail"])
    grown_kib = memory_kib(db.process.pid, "VmHWM") - resident_before
    assert grown_kib < 16 * 1024, f"the service grew by {grown_kib} KiB"
    assert_served(db)


def test_too_many_header_fields_get_431(db: ServiceProcess) -> None:
    with socket.create_connection(("127.0.0.1", db.port), timeout=10) as connection:
        started = time.monotonic()
        fields = b"".join(b"X-Field-%d: value\r\n" % number for number in range(101))
        connection.sendall(b"GET /orders HTTP/1.1\r\nHost: db\r\n" + fields + b"\r\n")
        answer = read_until_closed(connection, started, timeout=5)

    assert answer.status == 431
    assert "at most 100 headers" in str(answer.problem()["detail"])


def test_slowloris_connections_get_408_and_are_closed_in_time(db: ServiceProcess) -> None:
    """Two hundred connections trickling headers stayed open as long as they kept trickling."""

    def trickle() -> Answer:
        with socket.create_connection(("127.0.0.1", db.port), timeout=10) as connection:
            started = time.monotonic()
            connection.sendall(b"GET /orders HTTP/1.1\r\nHost: db\r\n")
            connection.settimeout(0.1)
            raw = b""
            while time.monotonic() - started < HEADER_TIMEOUT + SLACK_SECONDS:
                try:
                    chunk = receive(connection)
                except TimeoutError:
                    with contextlib.suppress(OSError):  # closed: the answer is to be read
                        connection.sendall(b"X-Slow: 1\r\n")
                    continue
                if not chunk:
                    return parse(raw, time.monotonic() - started)
                raw += chunk
            pytest.fail(f"still open after {HEADER_TIMEOUT + SLACK_SECONDS} s: {raw[:200]!r}")

    with ThreadPoolExecutor(40) as pool:
        trickles = [pool.submit(trickle) for _ in range(40)]
        time.sleep(0.3)
        assert_served(db)
        answers = [trickle.result() for trickle in trickles]

    assert {answer.status for answer in answers} == {408}
    assert min(answer.seconds for answer in answers) > HEADER_TIMEOUT - 0.1
    assert "headers did not arrive" in str(answers[0].problem()["detail"])


def test_a_later_head_that_stops_arriving_on_a_kept_alive_connection_gets_408(
    db: ServiceProcess,
) -> None:
    """A request after the first on a connection has its own deadline, from its first bytes."""
    with socket.create_connection(("127.0.0.1", db.port), timeout=10) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: db\r\n\r\n")
        raw = b""
        while not raw.endswith(b"}"):  # the whole answer, a JSON object
            raw += receive(connection)
        assert parse(raw, 0).status == 200
        time.sleep(HEADER_TIMEOUT + 0.2)  # idle between requests: no deadline runs then
        started = time.monotonic()
        connection.sendall(b"GET /orders HTTP/1.1\r\nHost: db\r\n")
        answer = read_until_closed(connection, started, timeout=HEADER_TIMEOUT + SLACK_SECONDS)

    assert answer.status == 408
    assert "headers did not arrive" in str(answer.problem()["detail"])
    assert answer.seconds > HEADER_TIMEOUT - 0.1


def test_a_body_that_stops_arriving_gets_408_and_the_connection_is_closed(
    db: ServiceProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", db.port), timeout=10) as connection:
        started = time.monotonic()
        connection.sendall(
            b"POST /orders HTTP/1.1\r\nHost: db\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"item": '
        )
        answer = read_until_closed(connection, started, timeout=BODY_TIMEOUT + SLACK_SECONDS)

    assert answer.status == 408
    assert "body did not arrive" in str(answer.problem()["detail"])
    assert answer.seconds > BODY_TIMEOUT - 0.1
    assert_served(db)


def test_connections_beyond_the_limit_get_503_and_normal_clients_are_served_again(
    tmp_path: Path,
) -> None:
    db = start_service(
        "db", tmp_path, {"MICROSHOP_STORAGE": "memory", "MICROSHOP_MAX_CONNECTIONS": "20"}
    )
    holders = [socket.create_connection(("127.0.0.1", db.port), timeout=10) for _ in range(20)]
    try:
        for holder in holders:
            holder.sendall(b"GET /orders HTTP/1.1\r\n")
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", db.port), timeout=10) as connection:
            started = time.monotonic()
            connection.sendall(b"GET /orders HTTP/1.1\r\nHost: db\r\n\r\n")
            answer = read_until_closed(connection, started, timeout=5)

        assert answer.status == 503
        assert answer.headers["retry-after"] == "1"
        assert "too many connections" in str(answer.problem()["detail"])
    finally:
        for holder in holders:
            holder.close()
    try:
        time.sleep(0.3)
        assert_served(db)
    finally:
        assert db.stop() == 0, db.output()[-4000:]


def test_sigterm_answers_a_half_sent_body_at_once_and_finishes_complete_requests(
    tmp_path: Path, db: ServiceProcess
) -> None:
    """The half-sent request held the shutdown up for the whole `MICROSHOP_SHUTDOWN_TIMEOUT` and
    was then answered `500 text/plain`."""
    payments = start_service(
        "payment-service",
        tmp_path,
        {
            "MICROSHOP_DB_SERVICE_URL": db.url,
            "MICROSHOP_PAYMENT_FAULT_LATENCY": "1",
            "MICROSHOP_SHUTDOWN_TIMEOUT": "10",
        },
    )
    try:
        complete: list[httpx.Response] = []
        in_flight = threading.Thread(
            target=lambda: complete.append(httpx.get(payments.url + "/transactions", timeout=10))
        )
        with socket.create_connection(("127.0.0.1", payments.port), timeout=10) as connection:
            connection.sendall(
                b"POST /transactions HTTP/1.1\r\nHost: payments\r\n"
                b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"orderId": '
            )
            in_flight.start()
            time.sleep(0.3)
            started = time.monotonic()
            payments.process.send_signal(signal.SIGTERM)
            answer = read_until_closed(connection, started, timeout=3)
        exit_code = payments.process.wait(5)
        stopped = time.monotonic() - started
        in_flight.join(5)

        assert answer.status == 503
        assert answer.headers["retry-after"] == "1"
        assert "shutting down" in str(answer.problem()["detail"])
        assert answer.seconds < 1
        assert exit_code == 0
        assert stopped < 3
        assert [response.status_code for response in complete] == [200]
    finally:
        payments.stop()
