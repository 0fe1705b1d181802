"""The db service: orders and transactions over HTTP, stored through the repository."""

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from microshop.common.app import Service, create_app
from microshop.common.asgi import ServiceApp
from microshop.common.errors import ExceptionHandler, Problem, problem_response
from microshop.common.inputs import (
    IDEMPOTENCY_HEADER,
    idempotency_key_from,
    order_id_from,
    order_not_found,
    read_model,
    read_query,
)
from microshop.common.models import (
    ListQuery,
    Order,
    OrderCreate,
    OrderListQuery,
    OrderWithTransaction,
    Transaction,
    TransactionCreate,
    TransactionEnvelope,
    to_cents,
)
from microshop.common.openapi import STORAGE_ERRORS, ApiRoute
from microshop.common.responses import JSONResponse
from microshop.common.settings import Settings
from microshop.services.db.repository import (
    AmountMismatch,
    IdempotencyKeyReused,
    OrderNotFound,
    SlowedRepository,
    StorageUnavailable,
)
from microshop.services.db.storage import open_repository

logger = logging.getLogger("microshop.db")


def _storage_problem(error: Exception, **extensions: Any) -> Problem:
    """The database is down or slow: the client may retry, nothing half-done was kept."""
    logger.warning("storage unavailable: %s", error)
    return Problem(503, "The database is unavailable.", headers={"Retry-After": "1"}, **extensions)


async def _storage_unavailable(request: Request, error: Exception) -> Response:
    return problem_response(_storage_problem(error), request)


class DbService(Service):
    name = "db"
    has_storage = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.repository = SlowedRepository(
            open_repository(settings), self.faults.before_storage_call
        )

    async def start(self) -> None:
        await super().start()
        await self.repository.migrate()

    async def stop(self) -> None:
        await self.repository.close()
        await super().stop()

    async def check_ready(self) -> None:
        await self.repository.ping()

    def exception_handlers(self) -> Mapping[type[Exception], ExceptionHandler]:
        return {StorageUnavailable: _storage_unavailable}

    def routes(self) -> Sequence[BaseRoute]:
        return [
            ApiRoute(
                "/orders",
                self.list_orders,
                methods=["GET"],
                summary="List orders by id.",
                query=OrderListQuery,
                responses={200: list[Order]},
                errors=STORAGE_ERRORS,
            ),
            ApiRoute(
                "/orders",
                self.create_order,
                methods=["POST"],
                summary="Store a new pending order.",
                body=OrderCreate,
                headers=[IDEMPOTENCY_HEADER],
                responses={201: OrderWithTransaction, 200: OrderWithTransaction},
                errors=STORAGE_ERRORS,
                answer_headers=["Location"],
            ),
            ApiRoute(
                "/orders/{order_id:order_id}",
                self.get_order,
                methods=["GET"],
                summary="One order with its transaction.",
                responses={200: OrderWithTransaction},
                errors=STORAGE_ERRORS,
            ),
            ApiRoute(
                "/transactions",
                self.list_transactions,
                methods=["GET"],
                summary="List transactions by id.",
                query=ListQuery,
                responses={200: list[Transaction]},
                errors=STORAGE_ERRORS,
            ),
            ApiRoute(
                "/transactions",
                self.create_transaction,
                methods=["POST"],
                summary="Record an order's payment and settle the order, at most once.",
                body=TransactionCreate,
                responses={201: TransactionEnvelope, 200: TransactionEnvelope},
                errors={
                    404: "The order does not exist.",
                    409: "The amount is not the order's price.",
                    **STORAGE_ERRORS,
                },
            ),
        ]

    async def list_orders(self, request: Request) -> Response:
        query = read_query(request, OrderListQuery)
        found = await self.repository.list_orders(query)
        return JSONResponse(found)

    async def create_order(self, request: Request) -> Response:
        try:
            order = await read_model(request, OrderCreate)
            result = await self.repository.create_order(order, idempotency_key_from(request))
        except IdempotencyKeyReused:
            raise Problem(
                422,
                f"This {IDEMPOTENCY_HEADER} was already used with a different body.",
                order={},
            ) from None
        except Problem as problem:
            # The seed's order-service reads `order.id` from every answer and crashes without it.
            problem.extensions.setdefault("order", {})
            raise
        except StorageUnavailable as error:
            raise _storage_problem(error, order={}) from None
        stored = result.value
        return JSONResponse(
            stored,
            status_code=201 if result.created else 200,
            headers={"Location": f"/orders/{stored['order']['id']}"},
        )

    async def get_order(self, request: Request) -> Response:
        order_id = order_id_from(request)
        try:
            found = await self.repository.get_order(order_id)
        except OrderNotFound:
            raise order_not_found(order_id) from None
        return JSONResponse(found)

    async def list_transactions(self, request: Request) -> Response:
        query = read_query(request, ListQuery)
        found = await self.repository.list_transactions(query)
        return JSONResponse(found)

    async def create_transaction(self, request: Request) -> Response:
        payment = await read_model(request, TransactionCreate)
        amount_cents = None if payment.amount is None else to_cents(payment.amount)
        success = True if payment.success is None else payment.success
        try:
            result = await self.repository.record_transaction(
                payment.order_id, success, amount_cents
            )
        except OrderNotFound:
            raise order_not_found(payment.order_id) from None
        except AmountMismatch:
            # The body is valid; the order it names holds another price: a conflict with state.
            raise Problem(
                409, f"The amount does not match the price of order {payment.order_id}."
            ) from None
        return JSONResponse(
            {"transaction": result.value},
            status_code=201 if result.created else 200,
        )


def create(settings: Settings) -> ServiceApp:
    return create_app(DbService(settings))
