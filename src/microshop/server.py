"""Runs one service in this process: what `microshop serve` and every container do."""

import importlib
import logging
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from microshop.common.app import Service
from microshop.common.logs import configure_logging
from microshop.common.settings import Settings
from microshop.services import SERVICES, ServiceSpec

logger = logging.getLogger("microshop.server")


class GracefulServer(uvicorn.Server):
    """On SIGTERM the service reports not-ready before uvicorn stops accepting connections."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.service.draining:
            logger.info(
                "%s received signal %d: finishing in-flight requests", self.service.name, sig
            )
        self.service.draining = True
        super().handle_exit(sig, frame)


def build_app(spec: ServiceSpec, settings: Settings) -> Starlette:
    module = importlib.import_module(spec.module)
    app: Starlette = module.create(settings)
    return app


def serve(spec: ServiceSpec, settings: Settings) -> None:
    port = settings.port or spec.default_port
    settings = settings.model_copy(update={"port": port})
    configure_logging(spec.name, settings.log_format, settings.log_level)
    app = build_app(spec, settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
        backlog=2048,
    )
    GracefulServer(config, app.state.service).run()


def resolve(name: str) -> ServiceSpec:
    """A service by its Kubernetes name (`order-service`) or its package name (`orders`)."""
    aliases = {"gateway": "api-gateway", "orders": "order-service", "payments": "payment-service"}
    return SERVICES[aliases.get(name, name)]
