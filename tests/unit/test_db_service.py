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


def test_wrong_amount_is_422(db: TestClient) -> None:
    order_id = db.post("/orders", json={"item": "a", "price": 1, "customer": "b"}).json()["order"][
        "id"
    ]
    response = db.post("/transactions", json={"orderId": order_id, "amount": 2})
    assert response.status_code == 422


def test_unknown_route_and_method_are_problems(db: TestClient) -> None:
    assert db.get("/nothing").headers["content-type"] == "application/problem+json"
    assert db.delete("/orders").status_code == 405


def test_readyz_fails_while_draining(db: TestClient) -> None:
    assert db.get("/readyz").status_code == 200
    db.app.state.service.draining = True  # type: ignore[attr-defined]
    assert db.get("/readyz").status_code == 503


def test_an_unexpected_error_is_a_500_problem_that_names_its_request(tmp_path: Path) -> None:
    app = create(Settings(data_dir=tmp_path))

    async def broken() -> None:
        raise RuntimeError("the disk caught fire")

    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.service.repository.ping = broken
        response = client.get("/readyz", headers={"X-Request-ID": "fire-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "fire-1"
    assert "fire" not in response.text
