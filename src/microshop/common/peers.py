"""Reading a peer that may be one of the seed's services, which lack our extensions: what to ask
instead when a route is missing (it answers an HTML 404) and how to read what it sends."""

from starlette.responses import Response

from microshop.common.http_client import ServiceClient
from microshop.common.inputs import order_not_found
from microshop.common.models import (
    ReceivedOrder,
    ReceivedOrders,
    ReceivedPlacement,
    ReceivedTransaction,
    ReceivedTransactions,
)
from microshop.common.responses import JSONResponse

WHOLE_LIST = {"limit": "1000"}
"""A page as large as there is: the seed's services answer every entry whatever is asked."""


async def order_by_id(
    orders: ServiceClient, transactions: ServiceClient, order_id: int
) -> Response:
    """`GET /orders/{id}` of `orders`, as it answered; from a peer without that route, the order
    found in its list, settled by its transaction from the list of `transactions`."""
    answer = await orders.request("GET", f"/orders/{order_id}")
    if not answer.route_missing:
        answer.raise_for_problem()
        return Response(answer.body, status_code=answer.status, media_type="application/json")
    order = await listed_order(orders, order_id)
    if order is None:
        raise order_not_found(order_id)
    transaction = (await transactions_by_order(transactions)).get(order_id)
    if order.status is None:
        order = order.settled_by(transaction)
    return JSONResponse(
        ReceivedPlacement(order=order, transaction=transaction).model_dump(mode="json")
    )


async def listed_order(orders: ServiceClient, order_id: int) -> ReceivedOrder | None:
    """The order with this id from the list of `orders`, which pages (ours) or not (the seed's)."""
    answer = await orders.request(
        "GET", "/orders", params={"after": str(order_id - 1), "limit": "1"}
    )
    answer.raise_for_problem()
    return next((order for order in answer.read_list(ReceivedOrders) if order.id == order_id), None)


async def transactions_by_order(transactions: ServiceClient) -> dict[int, ReceivedTransaction]:
    """Each order's first transaction, from the whole list of a peer that does not page."""
    answer = await transactions.request("GET", "/transactions", params=WHOLE_LIST)
    answer.raise_for_problem()
    by_order: dict[int, ReceivedTransaction] = {}
    for transaction in answer.read_list(ReceivedTransactions):
        if transaction.order_id is not None:
            by_order.setdefault(transaction.order_id, transaction)
    return by_order
