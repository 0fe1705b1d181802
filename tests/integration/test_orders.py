"""The shop's contract, driven over HTTP against four real processes started by `microshop up`."""

import asyncio
import json
import socket
import uuid

import httpx
import pytest

from tests.shops import RunningShop

ORDER = {"item": "t-shirt", "price": 100, "customer": "Gregor"}


def unique_customer() -> str:
    return f"customer-{uuid.uuid4().hex[:10]}"


def test_place_order_as_json_is_created_paid_and_located(gateway: httpx.Client) -> None:
    response = gateway.post("/orders", json=ORDER)

    assert response.status_code == 201
    body = response.json()
    order, transaction = body["order"], body["transaction"]
    assert response.headers["location"] == f"/orders/{order['id']}"
    assert order | {"id": 0} == {**ORDER, "id": 0, "status": "paid", "success": True}
    assert transaction["orderId"] == order["id"]
    assert transaction["success"] is True
    assert transaction["amount"] == 100


def test_place_order_as_form_like_the_seed(gateway: httpx.Client) -> None:
    response = gateway.post("/orders", data={"item": "hat", "price": "19.99", "customer": "Ann"})

    assert response.status_code == 201
    assert response.json()["order"]["price"] == 19.99
    assert response.json()["order"]["status"] == "paid"


@pytest.mark.parametrize(
    ("price", "status", "success"),
    [
        (10_000, "paid", True),
        (10_000.01, "declined", False),
    ],
)
def test_orders_above_the_threshold_are_declined(
    gateway: httpx.Client, price: float, status: str, success: bool
) -> None:
    response = gateway.post("/orders", json={**ORDER, "price": price})

    assert response.status_code == 201
    assert response.json()["order"]["status"] == status
    assert response.json()["transaction"]["success"] is success


def test_get_one_order_returns_it_with_its_transaction(gateway: httpx.Client) -> None:
    placed = gateway.post("/orders", json=ORDER).json()

    response = gateway.get(f"/orders/{placed['order']['id']}")

    assert response.status_code == 200
    assert response.json() == placed


@pytest.mark.parametrize("order_id", ["999999999", str(2**70)])
def test_unknown_order_is_a_404_problem(gateway: httpx.Client, order_id: str) -> None:
    response = gateway.get(f"/orders/{order_id}")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


@pytest.mark.parametrize("service", ["api-gateway", "order-service", "db"])
def test_an_id_of_thousands_of_digits_is_a_404_problem(shop: RunningShop, service: str) -> None:
    """More digits than Python turns into an int (4,300) once made each service answer 500."""
    response = httpx.get(f"{shop.url(service)}/orders/{'9' * 4301}", timeout=10)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_pagination_follows_link_headers_through_every_order(gateway: httpx.Client) -> None:
    customer = unique_customer()
    placed = [
        gateway.post("/orders", json={**ORDER, "customer": customer}).json()["order"]["id"]
        for _ in range(5)
    ]

    seen = []
    url = f"/orders?limit=2&customer={customer}"
    pages = 0
    while url:
        response = gateway.get(url)
        assert response.status_code == 200
        seen.extend(order["id"] for order in response.json())
        url = response.links.get("next", {}).get("url", "")
        pages += 1

    assert seen == placed
    assert pages == 3


def test_list_filters_by_status(gateway: httpx.Client) -> None:
    customer = unique_customer()
    gateway.post("/orders", json={**ORDER, "customer": customer})
    gateway.post("/orders", json={**ORDER, "customer": customer, "price": 20_000})

    declined = gateway.get("/orders", params={"customer": customer, "status": "declined"}).json()
    everything = gateway.get("/orders", params={"customer": customer}).json()

    assert [order["status"] for order in declined] == ["declined"]
    assert [order["success"] for order in everything] == [True, False]


def test_same_idempotency_key_returns_the_first_answer_and_creates_nothing(
    gateway: httpx.Client,
) -> None:
    customer = unique_customer()
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    first = gateway.post("/orders", json={**ORDER, "customer": customer}, headers=headers)
    again = gateway.post("/orders", json={**ORDER, "customer": customer}, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert len(gateway.get("/orders", params={"customer": customer}).json()) == 1


def test_same_idempotency_key_with_another_body_is_refused(gateway: httpx.Client) -> None:
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    gateway.post("/orders", json=ORDER, headers=headers)

    response = gateway.post("/orders", json={**ORDER, "price": 5}, headers=headers)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_empty_idempotency_key_counts_as_none(gateway: httpx.Client) -> None:
    customer = unique_customer()
    for _ in range(2):
        response = gateway.post(
            "/orders", json={**ORDER, "customer": customer}, headers={"Idempotency-Key": ""}
        )
        assert response.status_code == 201
    assert len(gateway.get("/orders", params={"customer": customer}).json()) == 2


def test_overlong_idempotency_key_is_refused(gateway: httpx.Client) -> None:
    response = gateway.post("/orders", json=ORDER, headers={"Idempotency-Key": "k" * 201})
    assert response.status_code == 422


def test_non_ascii_idempotency_key_is_refused_at_the_edge(gateway: httpx.Client) -> None:
    """Each hop would read its bytes in another encoding; refused with a reason instead."""
    response = gateway.post(
        "/orders", json=ORDER, headers=[(b"Idempotency-Key", "schlüssel".encode())]
    )
    assert response.status_code == 422
    assert "ASCII" in response.json()["detail"]


def test_every_placed_order_answers_with_the_key_used(gateway: httpx.Client) -> None:
    made_up = gateway.post("/orders", json=ORDER)
    key = uuid.uuid4().hex
    given = gateway.post("/orders", json=ORDER, headers={"Idempotency-Key": key})

    assert len(made_up.headers["idempotency-key"]) == 32
    assert given.headers["idempotency-key"] == key


BAD_BODIES = [
    pytest.param({"item": "t-shirt", "price": 100}, 422, id="missing-customer"),
    pytest.param({}, 422, id="empty-object"),
    pytest.param({**ORDER, "price": "ten"}, 422, id="price-as-text"),
    pytest.param({**ORDER, "price": "1e3"}, 422, id="price-as-exponent-text"),
    pytest.param({**ORDER, "price": True}, 422, id="price-as-boolean"),
    pytest.param({**ORDER, "item": 5}, 422, id="item-as-number"),
    pytest.param({**ORDER, "price": -1}, 422, id="negative-price"),
    pytest.param({**ORDER, "price": 0}, 422, id="zero-price"),
    pytest.param({**ORDER, "price": 1.005}, 422, id="three-decimals"),
    pytest.param({**ORDER, "item": ""}, 422, id="empty-item"),
    pytest.param({**ORDER, "customer": "x" * 201}, 422, id="customer-too-long"),
    pytest.param([1, 2], 422, id="array-body"),
]


@pytest.mark.parametrize(("body", "status"), BAD_BODIES)
def test_bad_orders_get_a_problem_answer(gateway: httpx.Client, body: object, status: int) -> None:
    response = gateway.post("/orders", json=body)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["detail"]


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        pytest.param(
            b'{"item": "t-shirt", "price": ', "application/json", 400, id="malformed-json"
        ),
        pytest.param(b"item=t-shirt", "text/plain", 415, id="wrong-content-type"),
        pytest.param(b"", "", 415, id="no-content-type"),
        pytest.param(
            b'{"item": "' + b"x" * 1_000_000 + b'"}', "application/json", 413, id="1mb-body"
        ),
        pytest.param(
            b"item=hat&price=abc&customer=Ann",
            "application/x-www-form-urlencoded",
            422,
            id="form-price-not-a-number",
        ),
    ],
)
def test_unreadable_bodies_get_a_problem_answer(
    gateway: httpx.Client, content: bytes, content_type: str, status: int
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = gateway.post("/orders", content=content, headers=headers)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "limit=abc", "limit=5.0", "after=-1", "status=lost"]
)
def test_bad_list_queries_are_422(gateway: httpx.Client, query: str) -> None:
    response = gateway.get(f"/orders?{query}")

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("api-gateway", "/orders"),
        ("order-service", "/orders"),
        ("payment-service", "/transactions"),
        ("db", "/transactions"),
    ],
)
def test_an_unknown_query_parameter_is_a_400_that_names_it(
    shop: RunningShop, service: str, path: str
) -> None:
    """A misspelt filter is refused, not ignored: ignored, it would answer every order."""
    response = httpx.get(shop.url(service) + path + "?limit=1&costumer=Ann")

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    refused = [{"field": "costumer", "message": "Unknown query parameter"}]
    assert response.json()["errors"] == refused


async def test_concurrent_orders_get_distinct_ids_and_one_transaction_each(
    shop: RunningShop,
) -> None:
    customer = unique_customer()
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=shop.gateway_url, timeout=30, limits=limits) as client:
        answers = await asyncio.gather(
            *(client.post("/orders", json={**ORDER, "customer": customer}) for _ in range(200))
        )
        assert {answer.status_code for answer in answers} == {201}
        order_ids = [answer.json()["order"]["id"] for answer in answers]
        assert len(set(order_ids)) == 200

        transactions = []
        after = 0
        while True:
            page = (
                await client.get(
                    shop.url("payment-service") + "/transactions",
                    params={"limit": 1000, "after": after},
                )
            ).json()
            if not page:
                break
            transactions.extend(page)
            after = page[-1]["id"]
    paid_order_ids = [
        transaction["orderId"]
        for transaction in transactions
        if transaction["orderId"] in set(order_ids)
    ]
    assert sorted(paid_order_ids) == sorted(order_ids)


def test_every_service_publishes_openapi_health_and_metrics(shop: RunningShop) -> None:
    for service in ("api-gateway", "order-service", "payment-service", "db"):
        base = shop.url(service)
        spec = httpx.get(base + "/openapi.json").json()
        assert spec["openapi"].startswith("3.")
        assert spec["info"]["title"] == service
        assert httpx.get(base + "/healthz").json()["status"] == "ok"
        assert httpx.get(base + "/readyz").status_code == 200
        assert "http_requests_total" in httpx.get(base + "/metrics").text
        assert httpx.get(base + "/docs").status_code == 200


def test_request_id_is_returned_and_made_when_absent(gateway: httpx.Client) -> None:
    given = gateway.get("/orders", headers={"X-Request-ID": "trace-me-123"})
    made = gateway.get("/orders")

    assert given.headers["x-request-id"] == "trace-me-123"
    assert len(made.headers["x-request-id"]) == 32


@pytest.mark.parametrize("service", ["api-gateway", "db"])
def test_a_request_that_cannot_be_parsed_gets_a_problem(shop: RunningShop, service: str) -> None:
    """The HTTP parser's own 400 was text/plain."""
    with socket.create_connection(("127.0.0.1", shop.ports[service]), timeout=10) as connection:
        connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/problem+json" in head.lower()
    assert json.loads(body)["status"] == 400


def test_a_wrong_method_lists_every_method_of_the_path(gateway: httpx.Client) -> None:
    """Starlette listed only the first route's methods (`HEAD, GET`), though POST works too."""
    response = gateway.put("/orders", json=ORDER)

    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
