"""Placing, reading and listing orders through the gateway, as a client of the shop does."""

import os
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx

DECLINE_ABOVE = Decimal(os.environ.get("MICROSHOP_DECLINE_ABOVE", "10000"))
"""The gateway's decline rule; set it here too when the shop under test changed it."""
SETTLE_TIMEOUT_SECONDS = 30.0


def place(
    gateway: httpx.Client, customer: str, price: float = 100, **kwargs: Any
) -> httpx.Response:
    body = {"item": "t-shirt", "price": price, "customer": customer}
    return gateway.post("/orders", json=body, **kwargs)


def settled(gateway: httpx.Client, answer: httpx.Response) -> dict[str, Any]:
    """The order of a 201, or of a 202 once payment settled it (a cold cluster can be slow)."""
    assert answer.status_code in (201, 202), answer.text
    body: dict[str, Any] = answer.json()
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    while body["order"]["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.5)
        body = gateway.get(f"/orders/{body['order']['id']}").json()
    return body


def test_a_json_order_is_created_paid_and_located(gateway: httpx.Client, customer: str) -> None:
    answer = place(gateway, customer)
    body = settled(gateway, answer)

    order = body["order"]
    assert answer.headers["location"] == f"/orders/{order['id']}"
    assert order | {"id": 0} == {
        "id": 0,
        "item": "t-shirt",
        "price": 100,
        "customer": customer,
        "status": "paid",
        "success": True,
    }
    assert body["transaction"]["orderId"] == order["id"]
    assert body["transaction"]["amount"] == 100


def test_a_form_order_is_accepted_like_the_seed_took_it(
    gateway: httpx.Client, customer: str
) -> None:
    answer = gateway.post("/orders", data={"item": "hat", "price": "19.99", "customer": customer})

    order = settled(gateway, answer)["order"]
    assert order["price"] == 19.99
    assert order["status"] == "paid"


def test_one_order_reads_back_with_its_transaction(gateway: httpx.Client, customer: str) -> None:
    placed = settled(gateway, place(gateway, customer))

    answer = gateway.get(f"/orders/{placed['order']['id']}")

    assert answer.status_code == 200
    assert answer.json() == placed


def test_lists_page_through_a_customers_orders(gateway: httpx.Client, customer: str) -> None:
    placed = [settled(gateway, place(gateway, customer))["order"]["id"] for _ in range(5)]

    seen, pages, url = [], 0, f"/orders?limit=2&customer={customer}"
    while url:
        answer = gateway.get(url)
        assert answer.status_code == 200
        seen.extend(order["id"] for order in answer.json())
        url = answer.links.get("next", {}).get("url", "")
        pages += 1

    assert seen == placed
    assert pages == 3


def test_a_retry_with_the_same_idempotency_key_places_one_order(
    gateway: httpx.Client, customer: str
) -> None:
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    first = place(gateway, customer, headers=headers)
    again = place(gateway, customer, headers=headers)

    assert again.json()["order"]["id"] == first.json()["order"]["id"]
    assert len(gateway.get("/orders", params={"customer": customer}).json()) == 1
    other_body = place(gateway, customer, price=5, headers=headers)
    assert other_body.status_code == 422


def test_orders_above_the_threshold_are_declined(gateway: httpx.Client, customer: str) -> None:
    at_threshold = settled(gateway, place(gateway, customer, price=float(DECLINE_ABOVE)))
    above = settled(gateway, place(gateway, customer, price=float(DECLINE_ABOVE) + 0.01))

    assert at_threshold["order"]["status"] == "paid"
    assert above["order"]["status"] == "declined"
    assert above["transaction"]["success"] is False
    declined = gateway.get("/orders", params={"customer": customer, "status": "declined"})
    assert [order["id"] for order in declined.json()] == [above["order"]["id"]]


def test_a_bad_order_gets_a_problem_answer_naming_each_field(gateway: httpx.Client) -> None:
    answer = gateway.post("/orders", json={"item": "t-shirt", "price": -1})

    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == 422
    assert {error["field"] for error in problem["errors"]} == {"price", "customer"}


def test_malformed_json_and_unknown_orders_get_problem_answers(gateway: httpx.Client) -> None:
    malformed = gateway.post(
        "/orders", content=b'{"item": ', headers={"Content-Type": "application/json"}
    )
    unknown = gateway.get("/orders/999999999999")

    assert malformed.status_code == 400
    assert unknown.status_code == 404
    for answer in (malformed, unknown):
        assert answer.headers["content-type"] == "application/problem+json"
