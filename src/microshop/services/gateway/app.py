"""api-gateway: the public entrance; validates early and relays to order-service."""

import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from microshop.common.app import Service, create_app, relay
from microshop.common.inputs import (
    IDEMPOTENCY_HEADER,
    idempotency_key_from,
    order_id_from,
    read_model,
    read_query,
)
from microshop.common.models import Order, OrderCreate, OrderListQuery, OrderWithTransaction
from microshop.common.openapi import ApiRoute
from microshop.common.responses import JSONResponse
from microshop.common.settings import Settings
from microshop.services.gateway.storefront import Storefront


class Gateway(Service):
    name = "api-gateway"
    public = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.orders = self.http.client("order-service", settings.order_service_url)
        # Placing an order is two calls in order-service (db, then payment): give it time for both.
        self.place_order_timeout = settings.request_timeout * 2 + 0.5

    def routes(self) -> Sequence[BaseRoute]:
        return [
            ApiRoute(
                "/orders",
                self.list_orders,
                methods=["GET"],
                summary="List orders with their payment status, a page at a time.",
                query=OrderListQuery,
                responses={200: list[Order]},
            ),
            ApiRoute(
                "/orders",
                self.place_order,
                methods=["POST"],
                summary="Place an order: it is stored and charged.",
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
            *Storefront(self).routes(),
        ]

    async def list_orders(self, request: Request) -> Response:
        query = read_query(request, OrderListQuery)
        params = query.model_dump(mode="json", exclude_none=True)
        page = await self.fetch_orders(params)
        headers = {}
        if len(page) == query.limit and await self.fetch_orders(
            {**params, "limit": 1, "after": page[-1]["id"]}
        ):
            next_query = urlencode({**params, "after": page[-1]["id"]})
            headers["Link"] = f'</orders?{next_query}>; rel="next"'
        return JSONResponse(page, headers=headers)

    async def fetch_orders(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        answer = await self.orders.request(
            "GET", "/orders", params={name: str(value) for name, value in params.items()}
        )
        answer.raise_for_problem(self.orders.target)
        orders: list[dict[str, Any]] = answer.json()
        return orders

    async def place_order(self, request: Request) -> Response:
        order = await read_model(request, OrderCreate)
        # With a key, a retry after a lost answer can never create a second order.
        key = idempotency_key_from(request) or uuid.uuid4().hex
        answer = await self.orders.request(
            "POST",
            "/orders",
            json=order.model_dump(mode="json"),
            headers={IDEMPOTENCY_HEADER: key},
            idempotent=True,
            timeout=self.place_order_timeout,
        )
        answer.raise_for_problem(self.orders.target)
        return Response(
            answer.body,
            status_code=answer.status,
            media_type="application/json",
            headers={"Location": answer.headers["Location"]},
        )

    async def get_order(self, request: Request) -> Response:
        return await relay(self.orders, f"/orders/{order_id_from(request)}")


def create(settings: Settings) -> Starlette:
    return create_app(Gateway(settings))
