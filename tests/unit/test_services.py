"""Each service in process, with the services it calls unreachable: what it decides on its own."""

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from microshop.common.asgi import ServiceApp
from microshop.common.settings import Settings
from microshop.ports import free_port
from microshop.services.gateway.app import create as create_gateway
from microshop.services.orders.app import create as create_orders
from microshop.services.payments.app import PaymentService
from microshop.services.payments.app import create as create_payments

ORDER = {"item": "t-shirt", "price": 100, "customer": "Gregor"}

AppFactory = Callable[[Settings], ServiceApp]
ClientFactory = Callable[[AppFactory], TestClient]


@pytest.fixture
def nowhere() -> str:
    """A URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


def settings_pointing_at(url: str, tmp_path: Path) -> Settings:
    return Settings(
        order_service_url=url,
        payment_service_url=url,
        db_service_url=url,
        data_dir=tmp_path,
        settle_interval=600,
        retries=0,
    )


@pytest.fixture
def client_for(nowhere: str, tmp_path: Path) -> Iterator[ClientFactory]:
    """Builds a service's app in process, started, and stops it after the test."""
    with ExitStack() as running:

        def build(create: AppFactory) -> TestClient:
            return running.enter_context(
                TestClient(create(settings_pointing_at(nowhere, tmp_path)))
            )

        yield build


@pytest.mark.parametrize(
    ("threshold", "amount", "approved"),
    [
        (10_000, "10000", True),
        (10_000, "10000.01", False),
        (50, "50.01", False),
        (50, "1", True),
    ],
)
def test_payment_decision_follows_the_configured_threshold(
    tmp_path: Path, threshold: int, amount: str, approved: bool
) -> None:
    service = PaymentService(Settings(decline_above=Decimal(threshold), data_dir=tmp_path))
    assert service.approves(Decimal(amount)) is approved


@pytest.mark.parametrize("create", [create_gateway, create_orders, create_payments])
def test_a_service_whose_dependency_is_down_stays_ready(
    client_for: ClientFactory, create: AppFactory
) -> None:
    """Readiness is the pod's own: on Kubernetes a dependency's outage must not take this pod out
    of its Service, or clients would get refused connections instead of 503 problems."""
    response = client_for(create).get("/readyz")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("create", "path", "body"),
    [
        (create_gateway, "/orders", ORDER),
        (create_orders, "/orders", ORDER),
        (create_payments, "/transactions", {"orderId": 1}),
    ],
)
def test_writes_with_the_next_service_down_are_503_with_retry_after(
    client_for: ClientFactory, create: AppFactory, path: str, body: dict[str, object]
) -> None:
    response = client_for(create).post(path, json=body)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize("create", [create_gateway, create_orders])
def test_invalid_orders_are_refused_before_any_call(
    client_for: ClientFactory, create: AppFactory
) -> None:
    response = client_for(create).post("/orders", json={**ORDER, "price": 0.001})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "price"


def test_gateway_describes_its_public_api(client_for: ClientFactory) -> None:
    paths = client_for(create_gateway).get("/openapi.json").json()["paths"]
    assert {"/orders", "/orders/{order_id}", "/status"} <= paths.keys()
    assert "Idempotency-Key" in str(paths["/orders"]["post"]["parameters"])
