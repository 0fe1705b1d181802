"""order-service: stores the order, then has payment-service charge it.

The db call carries an idempotency key (the client's, or one made here), so it is safe to retry; a
payment is at most one per order, so it is safe to retry too. When payment cannot be settled in time
the order stays `pending`, the answer is 202, and a background sweep settles it later. Any number
of order-service replicas may sweep at once: the db records one transaction per order, whoever asks.
The seed's db keeps no statuses and records every charge it is sent: over it, a pending order is one
without a transaction, and the sweep waits until no request can still be charging it.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence

from prometheus_client import Counter, Gauge
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from microshop.common.app import Service, create_app, relay
from microshop.common.asgi import ServiceApp
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
    ReceivedOrder,
    ReceivedOrders,
    ReceivedPlacement,
    decimal_to_number,
)
from microshop.common.openapi import DOWNSTREAM_ERRORS, ApiRoute
from microshop.common.peers import order_by_id, transactions_by_order
from microshop.common.responses import JSONResponse
from microshop.common.settings import Settings

MAX_SWEEP_BACKOFF_SECONDS = 30.0
SWEEP_PAGE_SIZE = 100
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
        self._settling: set[int] = set()
        """Orders being charged by a request right now, which a sweep leaves alone."""
        self._uncharged_since: dict[int, float] = {}
        # The longest a request can take to store an order and charge it (two calls, retries).
        self._placing_time_limit = (
            2 * (settings.request_timeout + settings.retries * settings.connect_timeout) + 1.0
        )
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
        self.sweeper = asyncio.create_task(self._settle_pending_orders_forever())

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
                errors=DOWNSTREAM_ERRORS,
            ),
            ApiRoute(
                "/orders",
                self.place_order,
                methods=["POST"],
                summary="Create an order and charge it.",
                body=OrderCreate,
                headers=[IDEMPOTENCY_HEADER],
                responses={201: OrderWithTransaction, 202: OrderWithTransaction},
                errors=DOWNSTREAM_ERRORS,
                answer_headers=["Location"],
            ),
            ApiRoute(
                "/orders/{order_id:order_id}",
                self.get_order,
                methods=["GET"],
                summary="One order with its transaction.",
                responses={200: OrderWithTransaction},
                errors=DOWNSTREAM_ERRORS,
            ),
        ]

    async def list_orders(self, request: Request) -> Response:
        query = read_query(request, OrderListQuery)
        return await relay(self.db, "/orders", query.model_dump(mode="json", exclude_none=True))

    async def get_order(self, request: Request) -> Response:
        return await order_by_id(self.db, self.db, order_id_from(request))

    async def place_order(self, request: Request) -> Response:
        order = await read_model(request, OrderCreate)
        key = idempotency_key_from(request) or uuid.uuid4().hex
        answer = await self.db.request(
            "POST",
            "/orders",
            json=order.model_dump(mode="json"),
            headers={IDEMPOTENCY_HEADER: key},
            idempotent=True,
        )
        answer.raise_for_problem()
        placed = answer.read(ReceivedPlacement)
        if placed.order is None:
            raise answer.unreadable()
        stored = placed.order
        # A db without statuses (the seed's) never settles an order: every new one is charged.
        if stored.status in (None, OrderStatus.PENDING):
            self._settling.add(stored.id)
            try:
                placed = await self._settle(stored)
            finally:
                self._settling.discard(stored.id)
        status = placed.status
        self.orders_placed.labels(status).inc()
        return JSONResponse(
            placed.model_dump(mode="json"),
            status_code=202 if status is OrderStatus.PENDING else 201,
            headers={"Location": f"/orders/{stored.id}"},
        )

    async def _settle_pending_orders_forever(self) -> None:
        """Sweeps at start-up and then periodically; backs off while payment or db is down."""
        interval = self.settings.settle_interval
        delay = interval
        while True:
            try:
                left_pending = await self._settle_pending_orders()
            except Problem as problem:
                left_pending = -1
                logger.warning("pending orders not settled: %s", problem)
            except Exception:
                left_pending = -1
                logger.exception("sweep for pending orders failed")
            delay = interval if left_pending == 0 else min(delay * 2, MAX_SWEEP_BACKOFF_SECONDS)
            await asyncio.sleep(delay)

    async def _settle_pending_orders(self) -> int:
        """Charges pending orders, oldest first, until payment fails to take one; returns how
        many are left pending."""
        pending = await self._pending_orders()
        settled = 0
        for position, order in enumerate(pending):
            result = await self._settle(
                order, timeout=self.settings.request_timeout * SWEEP_TIMEOUT_FACTOR
            )
            if result.status is OrderStatus.PENDING:
                left = len(pending) - position
                self.orders_waiting.set(left)
                logger.info("settled %d pending orders, %d left for later", settled, left)
                return left
            settled += 1
        self.orders_waiting.set(0)
        if settled:
            logger.info("settled %d pending orders", settled)
        return 0

    async def _pending_orders(self) -> list[ReceivedOrder]:
        """Every pending order, oldest first, each once, read a page at a time.

        Paging stops as soon as a page brings nothing new, so a db that ignores the query (the
        seed's, which answers every order each time) is read once, never in a loop.
        """
        query = OrderListQuery(status=OrderStatus.PENDING, limit=SWEEP_PAGE_SIZE)
        pending: dict[int, ReceivedOrder] = {}
        while True:
            answer = await self.db.request(
                "GET", "/orders", params=query.model_dump(mode="json", exclude_none=True)
            )
            answer.raise_for_problem()
            page = answer.read_list(ReceivedOrders)
            if any(order.status is None for order in page):
                return await self._uncharged(page)
            for order in page:
                if query.admits(order):
                    pending.setdefault(order.id, order)
            last = max((order.id for order in page), default=query.after)
            if len(page) < query.limit or last <= query.after:
                return sorted(pending.values(), key=lambda order: order.id)
            query = query.model_copy(update={"after": last})

    async def _uncharged(self, orders: list[ReceivedOrder]) -> list[ReceivedOrder]:
        """From a db that keeps no status (the seed's): the orders that have no transaction.

        Such a db records every charge it is sent, so an order is taken only once it has been
        without a transaction for longer than placing an order can take: a charge still on its
        way, from this process or another replica, is never made a second time.
        """
        charged = await transactions_by_order(self.db)
        now = time.monotonic()
        uncharged = {
            order.id: order
            for order in orders
            if order.id not in charged and order.id not in self._settling
        }
        self._uncharged_since = {
            order_id: self._uncharged_since.get(order_id, now) for order_id in uncharged
        }
        return [
            order
            for order_id, order in sorted(uncharged.items())
            if now - self._uncharged_since[order_id] >= self._placing_time_limit
        ]

    async def _settle(
        self, order: ReceivedOrder, timeout: float | None = None
    ) -> ReceivedPlacement:
        """Charges a pending order; if payment cannot be reached in time it stays pending."""
        still_pending = ReceivedPlacement(order=order.settled_by(None), transaction=None)
        charge: dict[str, object] = {"orderId": order.id}
        if order.amount is not None:
            charge["amount"] = decimal_to_number(order.amount)
        try:
            answer = await self.payments.request(
                "POST",
                "/transactions",
                json=charge,
                idempotent=True,  # at most one transaction per order, whatever is repeated
                timeout=timeout,
            )
        except (DownstreamUnavailable, DownstreamTimeout):
            return still_pending
        if answer.status in (502, 503, 504):
            return still_pending
        answer.raise_for_problem()
        transaction = answer.read(ReceivedPlacement).transaction
        if transaction is None:
            # The seed's payment-service passes a failure of the db on with status 200.
            problem = answer.problem_inside()
            if problem.status >= 500:
                return still_pending
            raise problem
        if transaction.amount is None:  # the seed's transactions carry no amount
            transaction = transaction.model_copy(update={"amount": order.price})
        return ReceivedPlacement(order=order.settled_by(transaction), transaction=transaction)


def create(settings: Settings) -> ServiceApp:
    return create_app(OrderService(settings))
