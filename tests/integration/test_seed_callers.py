"""The seed's callers, speaking exactly what the Node.js demo sent, get what they read."""

import httpx

from tests.shops import RunningShop


def test_seed_db_calls(shop: RunningShop) -> None:
    db = shop.url("db")
    created = httpx.post(db + "/orders", json={"item": "mug", "price": 7, "customer": "Bo"})
    assert created.status_code in (200, 201)
    order = created.json()["order"]
    assert {"id", "item", "price", "customer"} <= order.keys()

    paid = httpx.post(db + "/transactions", json={"orderId": order["id"]})
    assert paid.json()["transaction"] | {"id": 0} == {
        "id": 0,
        "orderId": order["id"],
        "success": True,
        "amount": 7,
    }
    orders = httpx.get(db + "/orders", params={"after": order["id"] - 1}).json()
    assert orders[0]["id"] == order["id"]


def test_seed_payment_call_with_only_an_order_id(shop: RunningShop) -> None:
    order = httpx.post(
        shop.url("db") + "/orders", data={"item": "lamp", "price": "20000", "customer": "Cy"}
    ).json()["order"]

    first = httpx.post(shop.url("payment-service") + "/transactions", json={"orderId": order["id"]})
    again = httpx.post(shop.url("payment-service") + "/transactions", json={"orderId": order["id"]})

    assert first.status_code == 201
    assert first.json()["transaction"]["success"] is False  # 20,000 is above the threshold
    assert again.status_code == 200
    assert again.json() == first.json()


def test_seed_gateway_listing_fields(shop: RunningShop) -> None:
    httpx.post(shop.gateway_url + "/orders", json={"item": "pen", "price": 2, "customer": "Di"})

    listed = httpx.get(shop.gateway_url + "/orders").json()

    assert all({"id", "price", "customer", "success"} <= entry.keys() for entry in listed)
