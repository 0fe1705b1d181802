"""Internal service authentication, on four real processes.

With MICROSHOP_INTERNAL_TOKEN set (one token shared by all), order-service, payment-service and db
answer 401 to any call without it (health, readiness and metrics excepted) while the gateway,
public, sends it on every call it makes. With per-service identities (MICROSHOP_SERVICE_TOKEN and
MICROSHOP_CALLER_DIGESTS) each callee also knows who calls, and lets each caller use only its own
routes: only payment-service records a payment, whoever else reaches db.
"""

import hashlib
import json
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


# --- per-service identities ----------------------------------------------------------------------

SERVICE_TOKENS = {
    name: secrets.token_hex(32) for name in ("api-gateway", "order-service", "payment-service")
}
EXPENSIVE_ORDER = {"item": "lamp", "price": 20000, "customer": "Mallory"}


def identity_blueprint(path: Path) -> Path:
    """A blueprint that gives each service its own token and the others the digests of those
    tokens, and keeps order-service from sweeping pending orders while a test looks at one."""
    services: dict[str, dict[str, str]] = {}
    for name in ("api-gateway", "payment-service", "order-service", "db"):
        environment = {}
        if name in SERVICE_TOKENS:
            environment["MICROSHOP_SERVICE_TOKEN"] = SERVICE_TOKENS[name]
        if name in INTERNAL_CALLS:
            environment["MICROSHOP_CALLER_DIGESTS"] = ",".join(
                f"{caller}={hashlib.sha256(token.encode()).hexdigest()}"
                for caller, token in SERVICE_TOKENS.items()
            )
        services[name] = environment
    services["order-service"]["MICROSHOP_SETTLE_INTERVAL"] = "600"
    path.write_text(
        json.dumps({"services": {name: {"environment": env} for name, env in services.items()}})
    )
    return path


def as_service(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SERVICE_TOKENS[name]}"}


@pytest.fixture(scope="module")
def identified_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningShop]:
    directory = tmp_path_factory.mktemp("identified-shop")
    blueprint = identity_blueprint(directory / "identities.json")
    running = start_shop(directory, "--blueprint", str(blueprint))
    yield running
    assert running.stop() == 0, running.output()[-4000:]


def pending_order_in_db(shop: RunningShop) -> int:
    """An order stored in db by order-service's identity and not charged yet."""
    stored = httpx.post(
        shop.url("db") + "/orders", json=EXPENSIVE_ORDER, headers=as_service("order-service")
    )
    assert stored.status_code == 201, stored.text
    assert stored.json()["order"]["status"] == "pending"
    order_id: int = stored.json()["order"]["id"]
    return order_id


def order_in_db(shop: RunningShop, order_id: int) -> dict[str, object]:
    answer = httpx.get(f"{shop.url('db')}/orders/{order_id}", headers=as_service("order-service"))
    assert answer.status_code == 200, answer.text
    placement: dict[str, object] = answer.json()
    return placement


def test_with_identities_an_order_is_placed_and_paid_and_strangers_are_refused(
    identified_shop: RunningShop,
) -> None:
    with httpx.Client(base_url=identified_shop.gateway_url, timeout=10) as gateway:
        placed = gateway.post("/orders", json=ORDER)
        assert placed.status_code == 201, placed.text
        assert placed.json()["order"]["status"] == "paid"
        assert gateway.get(f"/orders/{placed.json()['order']['id']}").status_code == 200
        assert gateway.get("/orders").status_code == 200
    for service, (method, path) in INTERNAL_CALLS.items():
        refused = httpx.request(method, identified_shop.url(service) + path, timeout=5)
        assert refused.status_code == 401, service


@pytest.mark.parametrize("caller", ["api-gateway", "order-service"])
def test_only_payment_service_can_record_a_payment_in_db(
    identified_shop: RunningShop, caller: str
) -> None:
    """The attack of the shared token: reach db directly and mark a 20,000 order paid."""
    order_id = pending_order_in_db(identified_shop)
    forged = {"orderId": order_id, "amount": 20000, "success": True}

    refused = httpx.post(
        identified_shop.url("db") + "/transactions", json=forged, headers=as_service(caller)
    )

    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert caller in refused.json()["detail"]
    assert order_in_db(identified_shop, order_id)["transaction"] is None

    recorded = httpx.post(
        identified_shop.url("db") + "/transactions",
        json={**forged, "success": False},
        headers=as_service("payment-service"),
    )
    assert recorded.status_code == 201, recorded.text
    assert order_in_db(identified_shop, order_id)["order"]["status"] == "declined"  # type: ignore[index]


def test_only_order_service_can_store_an_order_in_db(identified_shop: RunningShop) -> None:
    db = identified_shop.url("db")
    before = httpx.get(db + "/orders", headers=as_service("payment-service")).json()

    refused = httpx.post(db + "/orders", json=ORDER, headers=as_service("payment-service"))

    assert refused.status_code == 403, refused.text
    assert httpx.get(db + "/orders", headers=as_service("payment-service")).json() == before


def test_payment_service_takes_charges_only_from_order_service(
    identified_shop: RunningShop,
) -> None:
    order_id = pending_order_in_db(identified_shop)

    refused = httpx.post(
        identified_shop.url("payment-service") + "/transactions",
        json={"orderId": order_id},
        headers=as_service("api-gateway"),
    )

    assert refused.status_code == 403, refused.text
    assert order_in_db(identified_shop, order_id)["transaction"] is None
    listed = httpx.get(
        identified_shop.url("payment-service") + "/transactions", headers=as_service("api-gateway")
    )
    assert listed.status_code == 200, listed.text


@pytest.mark.parametrize(
    ("service", "caller"),
    [
        ("order-service", "payment-service"),
        ("order-service", "order-service"),
        ("db", "api-gateway"),
    ],
)
def test_a_service_may_read_only_what_it_needs(
    identified_shop: RunningShop, service: str, caller: str
) -> None:
    response = httpx.get(identified_shop.url(service) + "/orders", headers=as_service(caller))

    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("service", INTERNAL_CALLS)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        f"Bearer {TOKEN}",
        "Bearer",
        f"Basic {SERVICE_TOKENS['payment-service']}",
        f"Bearer {SERVICE_TOKENS['payment-service']}x",
    ],
    ids=["none", "unknown-token", "empty", "wrong-scheme", "token-prefix"],
)
def test_identities_refuse_calls_without_one(
    identified_shop: RunningShop, service: str, authorization: str | None
) -> None:
    method, path = INTERNAL_CALLS[service]
    headers = {} if authorization is None else {"Authorization": authorization}

    response = httpx.request(method, identified_shop.url(service) + path, headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("path", OPEN_PATHS)
@pytest.mark.parametrize("service", INTERNAL_CALLS)
def test_with_identities_probes_and_metrics_stay_open(
    identified_shop: RunningShop, service: str, path: str
) -> None:
    assert httpx.get(identified_shop.url(service) + path, timeout=5).status_code == 200


def test_no_service_token_reaches_the_logs(identified_shop: RunningShop) -> None:
    with httpx.Client(base_url=identified_shop.gateway_url, timeout=10) as gateway:
        assert gateway.post("/orders", json=ORDER).status_code == 201
    httpx.post(
        identified_shop.url("db") + "/orders", json=ORDER, headers=as_service("payment-service")
    )

    output = identified_shop.output()
    assert not [name for name, token in SERVICE_TOKENS.items() if token in output]


def test_up_with_internal_auth_gives_each_service_a_new_identity(tmp_path: Path) -> None:
    running = start_shop(tmp_path, "--internal-auth")
    try:
        with httpx.Client(base_url=running.gateway_url, timeout=10) as gateway:
            placed = gateway.post("/orders", json=ORDER)
            assert placed.status_code == 201, placed.text
            assert placed.json()["order"]["status"] == "paid"
        refused = httpx.post(
            running.url("db") + "/transactions",
            json={"orderId": placed.json()["order"]["id"], "success": True},
        )
        assert refused.status_code == 401
        # No service's identity grants faults: on its own machine, an operator switches them.
        admin = running.url("db") + "/admin/faults"
        assert httpx.put(admin, json={"latency_seconds": 0.01}).status_code == 200
        assert httpx.delete(admin).json()["latency_seconds"] == 0
    finally:
        assert running.stop() == 0, running.output()[-4000:]
