"""order-service: stores the order, then has payment-service charge it.

The db call carries an idempotency key (the client's, or one made here), so it is safe to retry; a
payment is at most one per order, so it is safe to retry too. When payment cannot be settled in time
the order stays `pending` and the answer is 202.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from microshop.common.app import Service, create_app, relay
from microshop.common.http_client import DownstreamTimeout, DownstreamUnavailable
from microshop.common.inputs import order_id_from, read_model, read_query
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

IDEMPOTENCY_HEADER = "Idempotency-Key"


class OrderService(Service):
    name = "order-service"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.db = self.http.client("db", settings.db_service_url)
        self.payments = self.http.client("payment-service", settings.payment_service_url)

    async def check_ready(self) -> None:
        await self.check_dependency(self.db)

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
        key = request.headers.get(IDEMPOTENCY_HEADER) or uuid.uuid4().hex
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
        pending = placed["order"]["status"] == OrderStatus.PENDING
        return JSONResponse(
            placed,
            status_code=202 if pending else 201,
            headers={"Location": f"/orders/{placed['order']['id']}"},
        )

    async def settle(self, placed: dict[str, Any]) -> dict[str, Any]:
        """Charges a pending order; if payment cannot be reached in time it stays pending."""
        order = placed["order"]
        try:
            answer = await self.payments.request(
                "POST",
                "/transactions",
                json={"orderId": order["id"], "amount": order["price"]},
                idempotent=True,  # at most one transaction per order, whatever is repeated
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
