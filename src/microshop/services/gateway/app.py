"""api-gateway: the public entrance; validates early and relays to order-service."""

import uuid
from collections.abc import Sequence
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from microshop.common.app import Service, create_app
from microshop.common.asgi import ServiceApp
from microshop.common.errors import Problem
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
    OrderPageQuery,
    OrderWithTransaction,
    ReceivedOrder,
    ReceivedOrders,
    ReceivedPlacement,
    ReceivedPlacementId,
)
from microshop.common.openapi import DOWNSTREAM_ERRORS, ApiRoute
from microshop.common.peers import order_by_id, transactions_by_order
from microshop.common.responses import JSONResponse
from microshop.common.settings import Settings
from microshop.services.gateway.storefront import Storefront


class Gateway(Service):
    name = "api-gateway"
    public = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.orders = self.http.client("order-service", settings.order_service_url)
        # Asked only when order-service lists orders without their payment (the seed's does).
        self.payments = self.http.client("payment-service", settings.payment_service_url)
        # Placing an order is two calls in order-service (db, then payment): give it time for both.
        self.place_order_timeout = settings.request_timeout * 2 + 0.5

    def routes(self) -> Sequence[BaseRoute]:
        return [
            ApiRoute(
                "/orders",
                self.list_orders,
                methods=["GET"],
                summary="List orders with their payment status, a page at a time.",
                query=OrderPageQuery,
                responses={200: list[Order]},
                errors=DOWNSTREAM_ERRORS,
            ),
            ApiRoute(
                "/orders",
                self.place_order,
                methods=["POST"],
                summary="Place an order: it is stored and charged.",
                body=OrderCreate,
                headers=[IDEMPOTENCY_HEADER],
                responses={201: OrderWithTransaction, 202: OrderWithTransaction},
                errors=DOWNSTREAM_ERRORS,
                answer_headers=["Location", IDEMPOTENCY_HEADER],
            ),
            ApiRoute(
                "/orders/{order_id:order_id}",
                self.get_order,
                methods=["GET"],
                summary="One order with its transaction.",
                responses={200: OrderWithTransaction},
                errors=DOWNSTREAM_ERRORS,
            ),
            *Storefront(self).routes(),
        ]

    async def list_orders(self, request: Request) -> Response:
        query = read_query(request, OrderPageQuery)
        # One more than a page: whether it comes back says if a next page exists.
        orders = await self._fetch_orders(query.model_copy(update={"limit": query.limit + 1}))
        page = orders[: query.limit]
        headers = {}
        if len(orders) > query.limit:
            next_query = query.model_copy(update={"after": page[-1].id})
            headers["Link"] = f'</orders?{urlencode(_query_parameters(next_query))}>; rel="next"'
        return JSONResponse([order.model_dump(mode="json") for order in page], headers=headers)

    async def _fetch_orders(self, query: OrderListQuery) -> list[ReceivedOrder]:
        """One page from order-service; a peer that ignores the query (the seed's) answers every
        order, so the query is applied here too, and orders without a status are joined with
        their transactions, as the seed's gateway did."""
        answer = await self.orders.request("GET", "/orders", params=_query_parameters(query))
        answer.raise_for_problem()
        orders = answer.read_list(ReceivedOrders)
        if any(order.status is None for order in orders):
            transactions = await transactions_by_order(self.payments)
            orders = [
                order if order.status else order.settled_by(transactions.get(order.id))
                for order in orders
            ]
        return [order for order in orders if query.admits(order)]

    async def place_order(self, request: Request) -> Response:
        order = await read_model(request, OrderCreate)
        # With a key, a retry after a lost answer can never create a second order. Every answer
        # carries the key used, so a client that sent none can retry safely too.
        key = idempotency_key_from(request) or uuid.uuid4().hex
        try:
            response = await self._place(order, key)
        except Problem as problem:
            problem.headers[IDEMPOTENCY_HEADER] = key
            if problem.status == 504:
                problem.detail = (
                    f"{problem.detail} The order may still be placed: send it again with "
                    f"{IDEMPOTENCY_HEADER}: {key} to get its answer without placing it twice."
                )
            raise
        response.headers[IDEMPOTENCY_HEADER] = key
        return response

    async def _place(self, order: OrderCreate, key: str) -> Response:
        answer = await self.orders.request(
            "POST",
            "/orders",
            json=order.model_dump(mode="json"),
            headers={IDEMPOTENCY_HEADER: key},
            idempotent=True,
            timeout=self.place_order_timeout,
        )
        answer.raise_for_problem()
        placed_order = answer.read(ReceivedPlacementId).order
        if placed_order is not None:
            return Response(
                answer.body,
                status_code=answer.status,
                media_type="application/json",
                headers={"Location": answer.headers.get("Location", f"/orders/{placed_order.id}")},
            )
        # The seed's order-service answers with the transaction alone, with status 200 even
        # when it is a problem that it passes on; the order is then the one that was sent.
        transaction = answer.read(ReceivedPlacement).transaction
        if transaction is None:
            raise answer.problem_inside()
        if transaction.order_id is None:
            raise answer.unreadable()
        stored = ReceivedOrder(id=transaction.order_id, **order.model_dump())
        placed = ReceivedPlacement(order=stored.settled_by(transaction), transaction=transaction)
        return JSONResponse(
            placed.model_dump(mode="json"),
            status_code=201,
            headers={"Location": f"/orders/{stored.id}"},
        )

    async def get_order(self, request: Request) -> Response:
        return await order_by_id(self.orders, self.payments, order_id_from(request))


def _query_parameters(query: OrderListQuery) -> dict[str, str]:
    return {
        name: str(value) for name, value in query.model_dump(mode="json", exclude_none=True).items()
    }


def create(settings: Settings) -> ServiceApp:
    return create_app(Gateway(settings))
