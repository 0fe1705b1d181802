"""payment-service: a payment is a decision (the decline rule) recorded once per order by the db."""

import logging
from collections.abc import Sequence
from decimal import Decimal

from prometheus_client import Counter
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from microshop.common.app import Service, create_app, relay
from microshop.common.inputs import read_model, read_query
from microshop.common.middleware import FaultInjectionMiddleware
from microshop.common.models import (
    ListQuery,
    Transaction,
    TransactionCreate,
    TransactionEnvelope,
    decimal_to_number,
)
from microshop.common.openapi import ApiRoute
from microshop.common.settings import Settings

logger = logging.getLogger("microshop.payments")


class PaymentService(Service):
    name = "payment-service"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.db = self.http.client("db", settings.db_service_url)
        self.payments = Counter(
            "payments", "Payments recorded, by result.", ["result"], registry=self.metrics.registry
        )

    def middleware(self) -> Sequence[Middleware]:
        latency = self.settings.payment_fault_latency
        failure_rate = self.settings.payment_fault_failure_rate
        if not (latency or failure_rate):
            return ()
        logger.warning(
            "fault injection on: %g s latency, %g%% failures", latency, failure_rate * 100
        )
        return [Middleware(FaultInjectionMiddleware, latency=latency, failure_rate=failure_rate)]

    def routes(self) -> Sequence[BaseRoute]:
        return [
            ApiRoute(
                "/transactions",
                self.list_transactions,
                methods=["GET"],
                summary="List transactions by id.",
                query=ListQuery,
                responses={200: list[Transaction]},
            ),
            ApiRoute(
                "/transactions",
                self.create_transaction,
                methods=["POST"],
                summary="Charge an order: decide, then record the decision at most once.",
                body=TransactionCreate,
                responses={201: TransactionEnvelope, 200: TransactionEnvelope},
            ),
        ]

    def approves(self, amount: Decimal) -> bool:
        return amount <= self.settings.decline_above

    async def list_transactions(self, request: Request) -> Response:
        query = read_query(request, ListQuery)
        return await relay(self.db, "/transactions", query.model_dump(mode="json"))

    async def create_transaction(self, request: Request) -> Response:
        payment = await read_model(request, TransactionCreate)
        amount = payment.amount
        if amount is None:
            # The seed's callers send only the order id; the price is then read from the db.
            found = await self.db.request("GET", f"/orders/{payment.order_id}")
            found.raise_for_problem(self.db.target)
            amount = Decimal(str(found.json()["order"]["price"]))
        answer = await self.db.request(
            "POST",
            "/transactions",
            json={
                "orderId": payment.order_id,
                "amount": decimal_to_number(amount),
                "success": self.approves(amount),
            },
            idempotent=True,  # the db records at most one transaction per order
        )
        answer.raise_for_problem(self.db.target)
        if answer.status == 201:
            success = answer.json()["transaction"]["success"]
            self.payments.labels("approved" if success else "declined").inc()
        return Response(answer.body, status_code=answer.status, media_type="application/json")


def create(settings: Settings) -> Starlette:
    return create_app(PaymentService(settings))
