"""Runs one service in this process: what `microshop serve` and every container do."""

import asyncio
import importlib
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from types import FrameType
from typing import Any, ClassVar

import httptools
import orjson
import uvicorn
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from microshop.common.app import Service
from microshop.common.asgi import ServiceApp
from microshop.common.errors import Problem, problem_response
from microshop.common.logs import configure_logging
from microshop.common.settings import Settings
from microshop.services import ServiceSpec

logger = logging.getLogger("microshop.server")


class GracefulServer(uvicorn.Server):
    """Stops the way Kubernetes expects during a rolling update, and exits 0.

    On SIGTERM the service turns not-ready and, for `drain_seconds`, keeps answering with
    `Connection: close` so that load balancers and clients move away; then uvicorn stops accepting
    connections, lets in-flight requests finish (at most `shutdown_timeout`) and returns; a request
    still being sent is answered `503` at once (`ProblemHttpToolsProtocol.shutdown`). A second
    signal stops at once.
    """

    def __init__(self, config: uvicorn.Config, service: Service, drain_seconds: float) -> None:
        super().__init__(config)
        self.service = service
        self.drain_seconds = drain_seconds
        self.stop_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not uvicorn's handler: it re-raises the signal after shutdown, so the exit code is not 0.
        if self.service.draining:
            self.should_exit = True
            self.force_exit = True
            return
        logger.info("%s received signal %d: stopping gracefully", self.service.name, sig)
        self.service.draining = True
        self.stop_at = time.monotonic() + self.drain_seconds

    async def on_tick(self, counter: int) -> bool:
        if self.stop_at is not None and time.monotonic() >= self.stop_at:
            return True
        return await super().on_tick(counter)


class _RequestRefused(Exception):
    """Raised in a parser callback: stops parsing a request that is answered `problem`."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


def _problem_message(problem: Problem, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP answer, written straight to the connection, which is closed after it."""
    body = orjson.dumps(problem.to_dict())
    head = [f"HTTP/1.1 {problem.status} {HTTPStatus(problem.status).phrase}\r\n".encode("ascii")]
    head += [name + b": " + value + b"\r\n" for name, value in default_headers]
    head += [f"{name}: {value}\r\n".encode("latin-1") for name, value in problem.headers.items()]
    head += [
        b"content-type: application/problem+json\r\n",
        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
        b"connection: close\r\n\r\n",
    ]
    return b"".join(head) + body


async def _too_many_connections(scope: Scope, receive: Receive, send: Send) -> None:
    """What a connection beyond `max_connections` is answered instead of the service."""
    problem = Problem(
        503,
        "The service has too many connections open: try again.",
        headers={"Retry-After": "1", "Connection": "close"},
    )
    await problem_response(problem, Request(scope))(scope, receive, send)


class TurnBufferedTransport(asyncio.Transport):
    """A connection that sends what was written during one turn of the event loop in one write.

    uvicorn writes an answer's head and its body separately: two system calls and two TCP
    segments per answer, which its client then reads apart. Joined, an answer is one of each
    (docs/performance.md measures what that saves). Bytes wait at most until the loop's next
    turn, and closing the connection sends them first.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the limits of a server facing any client, and whose own
    answers are problem+json too, like every other error of the shop.

    uvicorn bounds neither the size of a request's head nor the time a client takes to send a
    request, and closes only idle kept-alive connections: a few clients sending huge or endless
    headers, or bodies that stop, would hold memory and connections for ever. Here a head larger
    than `max_header_bytes` or with more than `max_headers` fields is `431`; a head not complete
    `header_timeout` seconds after connecting (or after its first byte) or a body not complete
    `body_timeout` seconds after its head is `408`; a connection beyond `max_connections` is
    `503`. Each of them then closes the connection. On shutdown, a request still being sent is
    `503` at once instead of holding the shutdown up. Every answer leaves in one write
    (`TurnBufferedTransport`).
    """

    settings: ClassVar[Settings]

    @classmethod
    def configured(cls, settings: Settings) -> type["ProblemHttpToolsProtocol"]:
        """This protocol with the limits of `settings`: uvicorn makes one per connection."""
        return type(cls.__name__, (cls,), {"settings": settings})

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._reading_head = True
        """Between requests or inside one's head: bytes that arrive belong to a head."""
        self._head_bytes = 0
        """The bytes received of the head being read, whole or not."""
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(TurnBufferedTransport(transport, self.loop))
        self._set_deadline(self.settings.header_timeout, self._head_timed_out)
        if len(self.connections) > self.settings.max_connections:
            logger.warning("more than %d connections: answering 503", self.settings.max_connections)
            self.app = _too_many_connections

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._reading_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._clear_deadline()
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as error:
            if isinstance(error.__context__, _RequestRefused):
                self._refuse(error.__context__.problem)
            else:
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._reading_head and self._head_bytes > self.settings.max_header_bytes:
            self._refuse(self._head_too_large())
        elif (
            # Only a request left unfinished by this read needs a deadline: most arrive whole in
            # one read, and then no timer is made for them at all.
            self._deadline is None
            and (self._head_bytes or not self._reading_head)
            and not self.transport.is_closing()
        ):
            if self._reading_head:
                self._set_deadline(self.settings.header_timeout, self._head_timed_out)
            else:
                self._set_deadline(self.settings.body_timeout, self._body_timed_out)

    def send_400_response(self, msg: str) -> None:
        self._refuse(Problem(400, msg))

    def on_headers_complete(self) -> None:
        # Measured once the head is whole, not per header: an unfinished head is bounded by the
        # bytes received (`data_received`), and a whole one is measured without the body bytes
        # that may have come in the same read.
        if len(self.headers) > self.settings.max_headers:
            raise _RequestRefused(
                Problem(431, f"A request may have at most {self.settings.max_headers} headers.")
            )
        head_size = len(self.url) + sum(len(name) + len(value) for name, value in self.headers)
        if head_size > self.settings.max_header_bytes:
            raise _RequestRefused(self._head_too_large())
        self._reading_head = False
        self._clear_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._clear_deadline()
        self._reading_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def shutdown(self) -> None:
        """uvicorn waits for a request still being sent until `shutdown_timeout`, then answers
        `500`: answer it `503` now, so that its client sends it again elsewhere."""
        cycle = self.cycle
        answering = (
            cycle is not None
            and not cycle.response_complete
            and (cycle.response_started or not cycle.more_body)
        )
        if self._reading_head:
            receiving = self._head_bytes > 0
        else:
            receiving = cycle is not None and cycle.more_body
        if receiving and not answering:
            self._refuse(
                Problem(
                    503,
                    "The service is shutting down: send the request again.",
                    headers={"Retry-After": "1"},
                )
            )
        else:
            super().shutdown()

    def _head_too_large(self) -> Problem:
        return Problem(
            431,
            f"A request's line and headers may take at most {self.settings.max_header_bytes} "
            "bytes.",
        )

    def _head_timed_out(self) -> None:
        self._deadline = None
        if not self._head_bytes:  # connected and sent nothing: there is nothing to answer
            self.transport.close()
            return
        self._refuse(
            Problem(
                408,
                f"The request's headers did not arrive within {self.settings.header_timeout} s.",
            )
        )

    def _body_timed_out(self) -> None:
        self._deadline = None
        self._refuse(
            Problem(
                408, f"The request's body did not arrive within {self.settings.body_timeout} s."
            )
        )

    def _set_deadline(self, seconds: float, callback: Callable[[], None]) -> None:
        self._clear_deadline()
        self._deadline = self.loop.call_later(seconds, callback)

    def _clear_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _refuse(self, problem: Problem) -> None:
        """Answers `problem` if the client is waiting for the answer to the request it is sending
        (not to an earlier one), then closes the connection."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if self._reading_head:
            waiting = cycle is None or cycle.response_complete
        else:
            waiting = cycle is not None and not cycle.response_started
        logger.info("refused a request from %s: %d %s", self.client, problem.status, problem)
        if waiting:
            self.transport.write(_problem_message(problem, self.server_state.default_headers))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def build_app(spec: ServiceSpec, settings: Settings) -> ServiceApp:
    module = importlib.import_module(spec.module)
    app: ServiceApp = module.create(settings)
    return app


def serve(spec: ServiceSpec, settings: Settings) -> None:
    port = settings.port or spec.default_port
    settings = settings.model_copy(update={"port": port})
    configure_logging(spec.name, settings.log_format, settings.log_level)
    run(build_app(spec, settings), settings)


def run(app: ServiceApp, settings: Settings) -> None:
    """Serves a `create_app` app until SIGTERM or SIGINT, then stops gracefully."""
    assert settings.port is not None, "the caller chooses the port"
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=ProblemHttpToolsProtocol.configured(settings),
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        # Only a public service can have a proxy on its own machine whose X-Forwarded-For names
        # the visitor; an internal service's callers are the shop's services, so uvicorn's
        # proxy-header middleware would read every request's headers for nothing.
        proxy_headers=app.service.public,
        timeout_graceful_shutdown=settings.shutdown_timeout,
        backlog=2048,
    )
    GracefulServer(config, app.service, settings.drain_seconds).run()
