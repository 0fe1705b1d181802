"""The seed's four services, route by route: CONTRACT.md section 1, with the demo's defects kept."""

from typing import Any

from tests.seed.downstream import Peers, parse_chunk
from tests.seed.express import Routes
from tests.seed.javascript import elements, read_property, strictly_equal


def db() -> Routes:
    """Two in-memory lists; an id is the list's length + 1; fields are stored as they were sent
    (a string price stays a string, a missing one is left out), and every payment succeeds."""
    orders: list[dict[str, Any]] = []
    transactions: list[dict[str, Any]] = []

    async def list_orders(body: Any) -> Any:
        return orders

    async def create_order(body: Any) -> Any:
        order = {"id": len(orders) + 1}
        order |= {field: read_property(body, field) for field in ("item", "price", "customer")}
        orders.append(order)
        return {"order": order}

    async def list_transactions(body: Any) -> Any:
        return transactions

    async def create_transaction(body: Any) -> Any:
        transaction = {
            "id": len(transactions) + 1,
            "orderId": read_property(body, "orderId"),
            "success": True,
        }
        transactions.append(transaction)
        return {"transaction": transaction}

    return {
        ("GET", "/orders"): list_orders,
        ("POST", "/orders"): create_order,
        ("GET", "/transactions"): list_transactions,
        ("POST", "/transactions"): create_transaction,
    }


def payment_service(db_address: str) -> Routes:
    """Passes everything to the db: the POST body as it came, the db's list as its first chunk."""
    peers = Peers()
    transactions_url = f"http://{db_address}/transactions"

    async def list_transactions(body: Any) -> Any:
        return parse_chunk(await peers.first_chunk(transactions_url))

    async def create_transaction(body: Any) -> Any:
        return await peers.post_json(transactions_url, body)

    return {
        ("GET", "/transactions"): list_transactions,
        ("POST", "/transactions"): create_transaction,
    }


def order_service(payment_address: str, db_address: str) -> Routes:
    """Stores the order in the db, then charges `order.id` of the db's answer: an answer without
    an `order` is a TypeError that ends the process, after the order was stored."""
    peers = Peers()
    orders_url = f"http://{db_address}/orders"

    async def list_orders(body: Any) -> Any:
        return parse_chunk(await peers.first_chunk(orders_url))

    async def create_order(body: Any) -> Any:
        stored = await peers.post_json(orders_url, body)
        order_id = read_property(read_property(stored, "order"), "id")
        return await peers.post_json(
            f"http://{payment_address}/transactions", {"orderId": order_id}
        )

    return {("GET", "/orders"): list_orders, ("POST", "/orders"): create_order}


def api_gateway(payment_address: str, order_address: str) -> Routes:
    """Forwards a POST (a form becomes JSON with string values) and answers whatever came back,
    with 200; lists one `{id, price, customer, success}` per pair of an order and a transaction
    with `order.id === transaction.orderId`, from the first chunk of each list."""
    peers = Peers()
    orders_url = f"http://{order_address}/orders"

    async def list_orders(body: Any) -> Any:
        orders_chunk = await peers.first_chunk(orders_url)
        transactions_chunk = await peers.first_chunk(f"http://{payment_address}/transactions")
        orders, transactions = parse_chunk(orders_chunk), parse_chunk(transactions_chunk)
        joined = []
        for order in elements(orders, "orders"):
            for transaction in elements(transactions, "transactions"):
                order_id = read_property(order, "id")
                if strictly_equal(order_id, read_property(transaction, "orderId")):
                    joined.append(
                        {
                            "id": order_id,
                            "price": read_property(order, "price"),
                            "customer": read_property(order, "customer"),
                            "success": read_property(transaction, "success"),
                        }
                    )
        return joined

    async def create_order(body: Any) -> Any:
        return await peers.post_json(orders_url, body)

    return {("GET", "/orders"): list_orders, ("POST", "/orders"): create_order}
