"""payment-service: a payment is a decision (the decline rule) recorded once per order by the db."""

import logging
from collections.abc import Sequence
from decimal import Decimal

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from microshop.common.app import Service, create_app
from microshop.common.asgi import ServiceApp
from microshop.common.errors import Problem
from microshop.common.faults import Faults
from microshop.common.inputs import order_not_found, read_model, read_query
from microshop.common.models import (
    ListQuery,
    ReceivedOrders,
    ReceivedPlacement,
    ReceivedTransaction,
    ReceivedTransactions,
    Transaction,
    TransactionCreate,
    TransactionEnvelope,
    decimal_to_number,
)
from microshop.common.openapi import DOWNSTREAM_ERRORS, ApiRoute
from microshop.common.peers import WHOLE_LIST, listed_order, transactions_by_order
from microshop.common.responses import JSONResponse
from microshop.common.settings import Settings

logger = logging.getLogger("microshop.payments")


class PaymentService(Service):
    name = "payment-service"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.db = self.http.client("db", settings.db_service_url)
        self._db_records_every_charge = False
        """Learnt from the db's answers: the seed's db keeps no single transaction per order, so
        this service then looks for an earlier charge before it records one."""
        self.payments = Counter(
            "payments", "Payments recorded, by result.", ["result"], registry=self.metrics.registry
        )

    def initial_faults(self) -> Faults:
        # The start-up variables of the first demos, kept: faults can also change at run time.
        return Faults(
            latency_seconds=self.settings.payment_fault_latency,
            error_rate=self.settings.payment_fault_failure_rate,
        )

    def routes(self) -> Sequence[BaseRoute]:
        return [
            ApiRoute(
                "/transactions",
                self.list_transactions,
                methods=["GET"],
                summary="List transactions by id.",
                query=ListQuery,
                responses={200: list[Transaction]},
                errors=DOWNSTREAM_ERRORS,
            ),
            ApiRoute(
                "/transactions",
                self.create_transaction,
                methods=["POST"],
                summary="Charge an order: decide, then record the decision at most once.",
                body=TransactionCreate,
                responses={201: TransactionEnvelope, 200: TransactionEnvelope},
                errors={
                    404: "The order does not exist.",
                    409: "The amount is not the order's price.",
                    422: "The order's price cannot be charged (a db that never validated it).",
                    **DOWNSTREAM_ERRORS,
                },
            ),
        ]

    def approves(self, amount: Decimal) -> bool:
        return amount <= self.settings.decline_above

    async def list_transactions(self, request: Request) -> Response:
        query = read_query(request, ListQuery)
        answer = await self.db.request("GET", "/transactions", params=query.model_dump(mode="json"))
        answer.raise_for_problem()
        transactions = answer.read_list(ReceivedTransactions)
        if any(transaction.amount is None for transaction in transactions):
            transactions = await self._decided(transactions)
        return JSONResponse([transaction.model_dump(mode="json") for transaction in transactions])

    async def create_transaction(self, request: Request) -> Response:
        payment = await read_model(request, TransactionCreate)
        # The seed's callers send only the order id; the price is then read from the db.
        amount = payment.amount or await self._price_of(payment.order_id)
        success = self.approves(amount)
        if self._db_records_every_charge:
            recorded = (await transactions_by_order(self.db)).get(payment.order_id)
            if recorded is not None:
                return self._answer(
                    recorded.model_copy(update={"success": success, "amount": amount}), 200
                )
        answer = await self.db.request(
            "POST",
            "/transactions",
            json={
                "orderId": payment.order_id,
                "amount": decimal_to_number(amount),
                "success": success,
            },
            idempotent=True,  # the db records at most one transaction per order
        )
        answer.raise_for_problem()
        transaction = answer.read(ReceivedPlacement).transaction
        if transaction is None:
            raise answer.problem_inside()
        created = answer.status == 201
        if transaction.amount is None:
            # The seed's db: it records whatever it is sent, always as a success, with no amount.
            self._db_records_every_charge = created = True
            transaction = transaction.model_copy(update={"success": success, "amount": amount})
        if created:
            self.payments.labels("approved" if success else "declined").inc()
        return self._answer(transaction, 201 if created else 200)

    def _answer(self, transaction: ReceivedTransaction, status: int) -> Response:
        return JSONResponse(
            {"transaction": transaction.model_dump(mode="json")}, status_code=status
        )

    async def _decided(self, transactions: list[ReceivedTransaction]) -> list[ReceivedTransaction]:
        """Transactions of a db that keeps no decisions (the seed's records every payment as a
        success, with no amount), with the amount and the decision this service's rule gives."""
        self._db_records_every_charge = True
        answer = await self.db.request("GET", "/orders", params=WHOLE_LIST)
        answer.raise_for_problem()
        prices = {order.id: order.amount for order in answer.read_list(ReceivedOrders)}
        decided = []
        for transaction in transactions:
            amount = transaction.amount or prices.get(transaction.order_id or 0)
            if transaction.amount is None and amount is not None:
                transaction = transaction.model_copy(
                    update={"amount": amount, "success": self.approves(amount)}
                )
            decided.append(transaction)
        return decided

    async def _price_of(self, order_id: int) -> Decimal:
        answer = await self.db.request("GET", f"/orders/{order_id}")
        if answer.route_missing:
            # The seed's db has no single-order route: the order is found in its list instead.
            self._db_records_every_charge = True
            order = await listed_order(self.db, order_id)
        else:
            answer.raise_for_problem()
            order = answer.read(ReceivedPlacement).order
        if order is None:
            raise order_not_found(order_id)
        if order.amount is None:
            raise Problem(422, f"Order {order_id} has no price that can be charged.")
        return order.amount


def create(settings: Settings) -> ServiceApp:
    return create_app(PaymentService(settings))
