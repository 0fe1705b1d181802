"""Runs one service in this process: what `microshop serve` and every container do."""

import importlib
import logging
import time
from types import FrameType

import orjson
import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from microshop.common.app import Service
from microshop.common.errors import Problem
from microshop.common.logs import configure_logging
from microshop.common.settings import Settings
from microshop.services import ServiceSpec

logger = logging.getLogger("microshop.server")


class GracefulServer(uvicorn.Server):
    """Stops the way Kubernetes expects during a rolling update, and exits 0.

    On SIGTERM the service turns not-ready and, for `drain_seconds`, keeps answering with
    `Connection: close` so that load balancers and clients move away; then uvicorn stops accepting
    connections, lets in-flight requests finish (at most `shutdown_timeout`) and returns. A second
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


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, whose answer to a request it cannot even parse is
    problem+json too, like every other error of the shop."""

    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps(Problem(400, msg).to_dict())
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head += [
            b"content-type: application/problem+json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def build_app(spec: ServiceSpec, settings: Settings) -> Starlette:
    module = importlib.import_module(spec.module)
    app: Starlette = module.create(settings)
    return app


def serve(spec: ServiceSpec, settings: Settings) -> None:
    port = settings.port or spec.default_port
    settings = settings.model_copy(update={"port": port})
    configure_logging(spec.name, settings.log_format, settings.log_level)
    run(build_app(spec, settings), settings)


def run(app: Starlette, settings: Settings) -> None:
    """Serves a `create_app` app until SIGTERM or SIGINT, then stops gracefully."""
    assert settings.port is not None, "the caller chooses the port"
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=ProblemHttpToolsProtocol,
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=settings.shutdown_timeout,
        backlog=2048,
    )
    GracefulServer(config, app.state.service, settings.drain_seconds).run()
