"""The shared client against a real local server: timeouts, and retries only when safe."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from microshop.common.http_client import DownstreamTimeout, DownstreamUnavailable, HttpSession
from microshop.common.metrics import ServiceMetrics
from microshop.common.settings import Settings
from microshop.common.tracing import Tracer
from microshop.ports import free_port


class ClosingServer:
    """Accepts connections, counts them, and closes each without answering (or answers slowly)."""

    def __init__(self, delay: float | None = None) -> None:
        self.delay = delay
        self.connections = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        if self.delay is not None:
            await asyncio.sleep(self.delay)
        writer.close()


class StallingServer(ClosingServer):
    """Answers the head of a response at once, then never sends its body."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(2)
        writer.close()


@pytest.fixture
async def http() -> AsyncIterator[HttpSession]:
    session = HttpSession(
        Settings(request_timeout=0.3, retries=2), ServiceMetrics(), Tracer("test")
    )
    await session.open()
    yield session
    await session.close()


async def serve(handler: ClosingServer) -> asyncio.Server:
    server = await asyncio.start_server(handler.handle, "127.0.0.1", 0)
    handler.port = server.sockets[0].getsockname()[1]
    return server


async def test_get_is_retried_then_reported_unavailable(http: HttpSession) -> None:
    handler = ClosingServer()
    async with await serve(handler):
        client = http.client("db", f"http://127.0.0.1:{handler.port}")
        with pytest.raises(DownstreamUnavailable) as raised:
            await client.request("GET", "/orders")
    # One connection per attempt: the client itself repeats nothing.
    assert handler.connections == 1 + 2
    assert raised.value.status == 503


async def test_plain_post_is_never_retried(http: HttpSession) -> None:
    handler = ClosingServer()
    async with await serve(handler):
        client = http.client("db", f"http://127.0.0.1:{handler.port}")
        with pytest.raises(DownstreamUnavailable):
            await client.request("POST", "/orders", json={})
    assert handler.connections == 1


async def test_slow_answer_is_a_timeout(http: HttpSession) -> None:
    handler = ClosingServer(delay=2)
    async with await serve(handler):
        client = http.client("db", f"http://127.0.0.1:{handler.port}")
        with pytest.raises(DownstreamTimeout) as raised:
            await client.request("GET", "/orders")
    assert raised.value.status == 504
    # The request may have reached its peer: even a GET is not repeated after its deadline.
    assert handler.connections == 1


async def test_a_body_that_stops_arriving_is_a_timeout_and_not_repeated(http: HttpSession) -> None:
    handler = StallingServer()
    async with await serve(handler):
        client = http.client("db", f"http://127.0.0.1:{handler.port}")
        with pytest.raises(DownstreamTimeout):
            await client.request("GET", "/orders")
    assert handler.connections == 1


async def test_nothing_listening_is_unavailable(http: HttpSession) -> None:
    client = http.client("db", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(DownstreamUnavailable):
        await client.request("GET", "/healthz")
