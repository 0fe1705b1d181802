"""The rendered manifests run the shop: every Deployment's container command and environment start
as local processes (Services mapped to ports on 127.0.0.1) and an order goes through the gateway."""

import secrets
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from microshop.common.identities import identity_environments, new_tokens
from tests.deploy.conftest import RENDERED
from tests.deploy.local_cluster import postgresql_binaries, run_locally
from tests.deploy.manifests import Doc, of_kind, pod_spec
from tests.system_tools import missing_system_tool

ORDER = {"item": "t-shirt", "price": 100, "customer": "Gregor"}
# A read each internal service answers with 200 when the service that makes it is allowed in.
INTERNAL_CALLS = {
    "order-service": ("/orders", "api-gateway"),
    "payment-service": ("/transactions", "api-gateway"),
    "db": ("/orders", "payment-service"),
}


def production_secrets() -> dict[str, dict[str, str]]:
    """The Secrets docs/kubernetes.md has operators create (an identity per service, made by
    `microshop identities`, and the database's), with fresh random values."""
    password = secrets.token_hex(16)
    identities = identity_environments(new_tokens())
    return {
        **{f"microshop-identity-{name}": variables for name, variables in identities.items()},
        "microshop-database": {
            "POSTGRES_USER": "microshop",
            "POSTGRES_PASSWORD": password,
            "POSTGRES_DB": "microshop",
            "MICROSHOP_DATABASE_URL": f"postgresql://microshop:{password}@postgresql:5432/microshop",
        },
    }


def bearer(token: str | None) -> dict[str, str]:
    assert token is not None
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.integration
@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", RENDERED)
def test_rendered_deployments_run_the_shop_end_to_end(
    rendered: dict[str, list[Doc]], name: str, tmp_path: Path
) -> None:
    docs = rendered[name]
    external = production_secrets() if name == "production" else {}
    binaries = postgresql_binaries()
    if of_kind(docs, "StatefulSet") and binaries is None:
        missing_system_tool("PostgreSQL (initdb, postgres, psql) is not installed")

    with run_locally(docs, tmp_path, external) as cluster:
        gateway = f"http://127.0.0.1:{cluster.addresses[('api-gateway', 3000)]}"
        with httpx.Client(base_url=gateway, timeout=10) as client:
            placed = client.post("/orders", json=ORDER)
            assert placed.status_code == 201, placed.text
            order = placed.json()["order"]
            assert order["status"] == "paid"
            fetched = client.get(f"/orders/{order['id']}")
            assert fetched.status_code == 200
            assert fetched.json()["transaction"]["orderId"] == order["id"]

        # Every probe of every pod answers 200 on the port it names.
        for workload in of_kind(docs, "Deployment"):
            pod = cluster.pods[workload["metadata"]["name"]]
            (container,) = pod_spec(workload)["containers"]
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                path = container[probe]["httpGet"]["path"]
                assert httpx.get(pod.url + path, timeout=5).status_code == 200, (pod.name, path)

        # Internal services let in only the shop's own calls when identities are configured, and
        # db takes a payment from payment-service only.
        tokens = {
            service: pod.environment.get("MICROSHOP_SERVICE_TOKEN")
            for service, pod in cluster.pods.items()
        }
        assert (tokens["api-gateway"] is not None) == (name != "base")
        for service, (path, caller) in INTERNAL_CALLS.items():
            url = cluster.pods[service].url + path
            anonymous = httpx.get(url, timeout=5)
            assert anonymous.status_code == (401 if name != "base" else 200), service
            if name != "base":
                allowed = httpx.get(url, headers=bearer(tokens[caller]), timeout=5)
                assert allowed.status_code == 200, (service, allowed.text)
        if name != "base":
            forged = httpx.post(
                cluster.pods["db"].url + "/transactions",
                json={"orderId": order["id"], "amount": 100, "success": True},
                headers=bearer(tokens["order-service"]),
                timeout=5,
            )
            assert forged.status_code == 403, forged.text

        database_url = cluster.pods["db"].environment.get("MICROSHOP_DATABASE_URL")
        assert (database_url is not None) == (name == "production")
        if database_url is not None and binaries is not None:
            # The URL the db container gets reaches the PostgreSQL that the StatefulSet sets up,
            # and the order placed above is kept there.
            select = f"SELECT count(*) FROM orders WHERE id = {int(order['id'])}"
            query = [binaries["psql"], database_url, "--tuples-only", "--command", select]
            answer = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False)
            assert answer.stdout.strip() == "1", answer.stderr


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_the_gateway_stays_ready_and_answers_503_while_db_is_away_then_recovers(
    rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    """README's "db is down" row with the local overlay's wiring. Readiness is each pod's own, so
    on Kubernetes the gateway and order-service stay in their Services and clients get 503
    problems with Retry-After, not refused connections."""
    with (
        run_locally(rendered["local"], tmp_path, {}) as cluster,
        httpx.Client(base_url=cluster.pods["api-gateway"].url, timeout=10) as client,
    ):
        assert client.post("/orders", json=ORDER).status_code == 201
        assert cluster.stop([cluster.pods["db"]]) == {"db": 0}

        for name in ("api-gateway", "order-service", "payment-service"):
            ready = httpx.get(cluster.pods[name].url + "/readyz", timeout=5)
            assert ready.status_code == 200, (name, ready.text)
        for method, path in (("POST", "/orders"), ("GET", "/orders"), ("GET", "/orders/1")):
            started = time.monotonic()
            response = client.request(method, path, json=ORDER if method == "POST" else None)
            assert time.monotonic() - started < 5, (method, path)
            assert response.status_code == 503, (method, path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"] == "1"

        # db comes back as a Deployment would start it again, on the same Service address;
        # nothing else restarts.
        cluster.wait_ready(cluster.start("db"))
        assert client.post("/orders", json=ORDER).status_code == 201
        assert len(client.get("/orders").json()) == 2
