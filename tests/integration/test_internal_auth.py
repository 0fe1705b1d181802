"""Internal service authentication, on four real processes: with MICROSHOP_INTERNAL_TOKEN set,
order-service, payment-service and db answer 401 to any call without the bearer token (health,
readiness and metrics excepted) while the gateway, public, sends it on every call it makes."""

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.generated_inputs import assert_conforms
from tests.shops import RunningShop, start_shop

ORDER = {"item": "t-shirt", "price": 100, "customer": "Gregor"}
INTERNAL_CALLS = {
    "order-service": ("GET", "/orders"),
    "payment-service": ("GET", "/transactions"),
    "db": ("GET", "/orders"),
}
OPEN_PATHS = ("/healthz", "/readyz", "/metrics")
TOKEN = secrets.token_hex(32)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def guarded_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningShop]:
    running = start_shop(
        tmp_path_factory.mktemp("guarded-shop"), environment={"MICROSHOP_INTERNAL_TOKEN": TOKEN}
    )
    yield running
    assert running.stop() == 0, running.output()[-4000:]


def test_orders_go_through_the_gateway_which_sends_the_token(guarded_shop: RunningShop) -> None:
    with httpx.Client(base_url=guarded_shop.gateway_url, timeout=10) as gateway:
        placed = gateway.post("/orders", json=ORDER)
        assert placed.status_code == 201, placed.text
        assert placed.json()["order"]["status"] == "paid"
        listed = gateway.get("/orders")
        assert listed.status_code == 200
        assert placed.json()["order"]["id"] in [order["id"] for order in listed.json()]


@pytest.mark.parametrize("service", INTERNAL_CALLS)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"],
    ids=["none", "wrong-token", "wrong-scheme", "token-prefix", "empty"],
)
def test_internal_services_refuse_calls_without_the_token(
    guarded_shop: RunningShop, service: str, authorization: str | None
) -> None:
    method, path = INTERNAL_CALLS[service]
    headers = {} if authorization is None else {"Authorization": authorization}

    response = httpx.request(method, guarded_shop.url(service) + path, headers=headers, timeout=5)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert TOKEN not in response.text


@pytest.mark.parametrize("service", INTERNAL_CALLS)
def test_internal_services_accept_the_token(guarded_shop: RunningShop, service: str) -> None:
    method, path = INTERNAL_CALLS[service]

    response = httpx.request(
        method,
        guarded_shop.url(service) + path,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )

    assert response.status_code == 200, response.text


def test_a_refused_call_changes_nothing(guarded_shop: RunningShop) -> None:
    db = guarded_shop.url("db")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    before = httpx.get(db + "/orders", headers=headers, timeout=5).json()

    refused = httpx.post(db + "/orders", json={**ORDER, "customer": "Mallory"}, timeout=5)

    assert refused.status_code == 401
    assert httpx.get(db + "/orders", headers=headers, timeout=5).json() == before


@pytest.mark.parametrize("path", OPEN_PATHS)
@pytest.mark.parametrize("service", ["api-gateway", *INTERNAL_CALLS])
def test_probes_and_metrics_stay_open(guarded_shop: RunningShop, service: str, path: str) -> None:
    assert httpx.get(guarded_shop.url(service) + path, timeout=5).status_code == 200


def test_the_gateway_stays_public(guarded_shop: RunningShop) -> None:
    assert httpx.get(guarded_shop.gateway_url + "/orders", timeout=5).status_code == 200


@pytest.mark.parametrize("service", INTERNAL_CALLS)
def test_without_a_token_configured_internal_services_stay_open_like_the_seed(
    shop: RunningShop, service: str
) -> None:
    method, path = INTERNAL_CALLS[service]

    assert httpx.request(method, shop.url(service) + path, timeout=5).status_code == 200


def test_the_token_never_reaches_the_logs(guarded_shop: RunningShop) -> None:
    httpx.get(guarded_shop.url("db") + "/orders", headers={"Authorization": "Bearer nope"})
    with httpx.Client(base_url=guarded_shop.gateway_url, timeout=10) as gateway:
        assert gateway.post("/orders", json=ORDER).status_code == 201

    assert TOKEN not in guarded_shop.output()


def test_a_guarded_service_documents_its_token_and_answers_as_documented(
    guarded_shop: RunningShop, tmp_path: Path
) -> None:
    """Its document names the bearer token and a 401 on every operation; schemathesis's
    `ignored_auth` check then calls each one without the token too."""
    url = guarded_shop.url("payment-service") + "/openapi.json"
    spec = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert spec["security"] == [{"internalToken": []}]
    for operations in spec["paths"].values():
        for operation in operations.values():
            assert "401" in operation["responses"]
    assert_conforms(url, tmp_path, "--header", f"Authorization: Bearer {TOKEN}", "-n", "5")
