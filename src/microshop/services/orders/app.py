"""order-service: stores the order, then has payment-service charge it.

The db call carries an idempotency key (the client's, or one made here), so it is safe to retry; a
payment is at most one per order, so it is safe to retry too. When payment cannot be settled in time
the order stays `pending`, the answer is 202, and a background sweep settles it later. Any number
of order-service replicas may sweep at once: the db records one transaction per order, whoever asks.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Gauge
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from microshop.common.app import Service, create_app, relay
from microshop.common.errors import Problem
from microshop.common.http_client import DownstreamTimeout, DownstreamUnavailable
from microshop.common.inputs import (
    IDEMPOTENCY_HEADER,
    idempotency_key_from,
    order_id_from,
    read_model,
    read_query,
)
from microshop.common.models import (
    Order,
    OrderCreate,
    OrderListQuery,
    OrderStatus,
    OrderWithTransaction,
)
from microshop.common.openapi import ApiRoute
from microshop.common.responses import JSONResponse
from microshop.common.settings import Settings

MAX_SWEEP_BACKOFF_SECONDS = 30.0
SWEEP_TIMEOUT_FACTOR = 5
"""Nobody waits on a sweep, so a slow payment-service gets this many times the usual timeout."""

logger = logging.getLogger("microshop.orders")


class OrderService(Service):
    name = "order-service"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.db = self.http.client("db", settings.db_service_url)
        self.payments = self.http.client("payment-service", settings.payment_service_url)
        self.sweeper: asyncio.Task[None] | None = None
        registry = self.metrics.registry
        self.orders_placed = Counter(
            "orders_placed",
            "Orders placed, by their status when answered.",
            ["status"],
            registry=registry,
        )
        self.orders_waiting = Gauge(
            "orders_awaiting_settlement",
            "Pending orders found by the last sweep and left pending.",
            registry=registry,
        )

    async def start(self) -> None:
        await super().start()
        self.sweeper = asyncio.create_task(self.settle_pending_orders_forever())

    async def stop(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sweeper
        await super().stop()

    def routes(self) -> Sequence[BaseRoute]:
        return [
            ApiRoute(
                "/orders",
                self.list_orders,
                methods=["GET"],
                summary="List orders by id.",
                query=OrderListQuery,
                responses={200: list[Order]},
            ),
            ApiRoute(
                "/orders",
                self.place_order,
                methods=["POST"],
                summary="Create an order and charge it.",
                body=OrderCreate,
                headers=[IDEMPOTENCY_HEADER],
                responses={201: OrderWithTransaction, 202: OrderWithTransaction},
            ),
            ApiRoute(
                "/orders/{order_id:int}",
                self.get_order,
                methods=["GET"],
                summary="One order with its transaction.",
                responses={200: OrderWithTransaction},
            ),
        ]

    async def list_orders(self, request: Request) -> Response:
        query = read_query(request, OrderListQuery)
        return await relay(self.db, "/orders", query.model_dump(mode="json", exclude_none=True))

    async def get_order(self, request: Request) -> Response:
        return await relay(self.db, f"/orders/{order_id_from(request)}")

    async def place_order(self, request: Request) -> Response:
        order = await read_model(request, OrderCreate)
        key = idempotency_key_from(request) or uuid.uuid4().hex
        stored = await self.db.request(
            "POST",
            "/orders",
            json=order.model_dump(mode="json"),
            headers={IDEMPOTENCY_HEADER: key},
            idempotent=True,
        )
        stored.raise_for_problem(self.db.target)
        placed: dict[str, Any] = stored.json()
        if placed["order"]["status"] == OrderStatus.PENDING:
            placed = await self.settle(placed)
        status = placed["order"]["status"]
        self.orders_placed.labels(status).inc()
        pending = status == OrderStatus.PENDING
        return JSONResponse(
            placed,
            status_code=202 if pending else 201,
            headers={"Location": f"/orders/{placed['order']['id']}"},
        )

    async def settle_pending_orders_forever(self) -> None:
        """Sweeps at start-up and then periodically; backs off while a dependency is down."""
        interval = self.settings.settle_interval
        delay = interval
        while True:
            try:
                await self.settle_pending_orders()
                delay = interval
            except Problem as problem:
                delay = min(delay * 2, MAX_SWEEP_BACKOFF_SECONDS)
                logger.warning("pending orders not settled (%s); next try in %g s", problem, delay)
            except Exception:
                delay = min(delay * 2, MAX_SWEEP_BACKOFF_SECONDS)
                logger.exception("sweep for pending orders failed; next try in %g s", delay)
            await asyncio.sleep(delay)

    async def settle_pending_orders(self) -> None:
        """Charges every pending order, oldest first, until payment fails to take one."""
        after = 0
        settled = 0
        waiting = 0
        while True:
            answer = await self.db.request(
                "GET", "/orders", params={"status": "pending", "after": str(after), "limit": "100"}
            )
            answer.raise_for_problem(self.db.target)
            page: list[dict[str, Any]] = answer.json()
            if not page:
                break
            for order in page:
                if waiting:  # payment failed once this sweep: only count what is left
                    waiting += 1
                    continue
                result = await self.settle(
                    {"order": order, "transaction": None},
                    timeout=self.settings.request_timeout * SWEEP_TIMEOUT_FACTOR,
                )
                if result["order"]["status"] == OrderStatus.PENDING:
                    waiting += 1
                else:
                    settled += 1
            after = page[-1]["id"]
        self.orders_waiting.set(waiting)
        if settled:
            logger.info("settled %d pending orders", settled)
        if waiting:
            raise DownstreamUnavailable(self.payments.target)

    async def settle(self, placed: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Charges a pending order; if payment cannot be reached in time it stays pending."""
        order = placed["order"]
        try:
            answer = await self.payments.request(
                "POST",
                "/transactions",
                json={"orderId": order["id"], "amount": order["price"]},
                idempotent=True,  # at most one transaction per order, whatever is repeated
                timeout=timeout,
            )
        except (DownstreamUnavailable, DownstreamTimeout):
            return placed
        if answer.status in (502, 503, 504):
            return placed
        answer.raise_for_problem(self.payments.target)
        transaction = answer.json()["transaction"]
        success = transaction["success"]
        status = OrderStatus.PAID if success else OrderStatus.DECLINED
        return {
            "order": {**order, "status": status.value, "success": success},
            "transaction": transaction,
        }


def create(settings: Settings) -> Starlette:
    return create_app(OrderService(settings))
