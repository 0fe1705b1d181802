"""The db service's HTTP layer, in process: status codes and problem answers."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from microshop.common.settings import Settings
from microshop.services.db.app import create


@pytest.fixture
def db(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create(Settings(data_dir=tmp_path))) as client:
        yield client


def test_created_then_replayed_with_the_same_key(db: TestClient) -> None:
    body = {"item": "a", "price": 1, "customer": "b"}
    first = db.post("/orders", json=body, headers={"Idempotency-Key": "k"})
    again = db.post("/orders", json=body, headers={"Idempotency-Key": "k"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()


def test_transaction_for_unknown_order_is_404(db: TestClient) -> None:
    response = db.post("/transactions", json={"orderId": 42})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_wrong_amount_is_a_409_conflict(db: TestClient) -> None:
    """The body is valid; it is the order's price that it conflicts with."""
    order_id = db.post("/orders", json={"item": "a", "price": 1, "customer": "b"}).json()["order"][
        "id"
    ]
    response = db.post("/transactions", json={"orderId": order_id, "amount": 2})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("query", "named"), [("?costumer=Ann", "costumer"), ("?=1", ""), ("?limit=5&Limit=6", "Limit")]
)
def test_an_unknown_query_parameter_is_refused_by_name(
    db: TestClient, query: str, named: str
) -> None:
    """A misspelt filter would otherwise answer every order as if it were applied."""
    response = db.get("/orders" + query)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [{"field": named, "message": "Unknown query parameter"}]
    assert f'"{named}"' in response.json()["detail"]


@pytest.mark.parametrize("limit", ["5.0", " 5", "+5", "1_0", "\u0665"])
def test_a_query_number_is_ascii_digits(db: TestClient, limit: str) -> None:
    assert db.get("/orders", params={"limit": limit}).status_code == 422
    assert db.get("/transactions?after").status_code == 422
    assert db.get("/orders", params={"limit": "05"}).status_code == 200


def test_a_form_is_held_to_the_json_rules(db: TestClient) -> None:
    """A form's "12" is the number 12 and "true" is true, but "1" is no boolean, in a form as
    in JSON."""
    order_id = db.post("/orders", json={"item": "a", "price": 1, "customer": "b"}).json()["order"][
        "id"
    ]
    refused = db.post("/transactions", data={"orderId": str(order_id), "success": "1"})
    assert refused.status_code == 422, refused.text
    assert db.post("/transactions", json={"orderId": order_id, "success": 1}).status_code == 422
    assert db.post("/transactions", json={"orderId": str(order_id)}).status_code == 422
    taken = db.post("/transactions", data={"orderId": str(order_id), "success": "false"})
    assert taken.status_code == 201, taken.text
    assert taken.json()["transaction"]["success"] is False


def test_unknown_route_and_method_are_problems(db: TestClient) -> None:
    assert db.get("/nothing").headers["content-type"] == "application/problem+json"
    assert db.delete("/orders").status_code == 405


def test_readyz_fails_while_draining(db: TestClient) -> None:
    assert db.get("/readyz").status_code == 200
    db.app.service.draining = True  # type: ignore[attr-defined]
    assert db.get("/readyz").status_code == 503


def test_an_unexpected_error_is_a_500_problem_that_names_its_request(tmp_path: Path) -> None:
    app = create(Settings(data_dir=tmp_path))

    async def broken() -> None:
        raise RuntimeError("the disk caught fire")

    with TestClient(app, raise_server_exceptions=False) as client:
        app.service.repository.ping = broken
        response = client.get("/readyz", headers={"X-Request-ID": "fire-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "fire-1"
    assert "fire" not in response.text
