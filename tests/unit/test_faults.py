"""The fault switch's rules that one machine cannot show with real processes: who may change faults
from another machine, in each mode of internal authentication, and what the latency distributions
draw. (The apps are driven without their
lifespan: `/admin/faults` needs neither storage nor peers.)"""

import statistics
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from microshop.common.faults import Faults, LatencyDistribution
from microshop.common.identities import identity_environments, new_tokens
from microshop.common.settings import Settings
from microshop.services.db.app import create as create_db
from microshop.services.gateway.app import create as create_gateway

TOKEN = "a-token-long-enough-for-the-rule"
AUTHORIZED = {"Authorization": f"Bearer {TOKEN}"}
BREAK = {"error_rate": 1}


@pytest.mark.parametrize("client_address", ["203.0.113.7", "10.1.2.3", "::ffff:198.51.100.1"])
def test_the_public_gateway_takes_faults_only_from_its_own_machine(
    tmp_path: Path, client_address: str
) -> None:
    app = create_gateway(Settings(data_dir=tmp_path))
    visitor = TestClient(app, client=(client_address, 40000))
    refused = visitor.put("/admin/faults", json=BREAK)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert visitor.get("/admin/faults").status_code == 403
    assert not app.service.faults.faults.active

    local = TestClient(app, client=("127.0.0.1", 40000))
    assert local.put("/admin/faults", json=BREAK).status_code == 200
    assert app.service.faults.faults.error_rate == 1


def test_without_internal_auth_an_internal_service_takes_faults_like_any_call(
    tmp_path: Path,
) -> None:
    app = create_db(Settings(data_dir=tmp_path, storage="memory"))
    peer = TestClient(app, client=("10.1.2.3", 40000))
    assert peer.put("/admin/faults", json=BREAK).status_code == 200


def test_with_a_token_internal_services_take_it_from_anywhere(tmp_path: Path) -> None:
    app = create_db(Settings(data_dir=tmp_path, storage="memory", internal_token=TOKEN))
    peer = TestClient(app, client=("10.1.2.3", 40000))
    assert peer.put("/admin/faults", json=BREAK).status_code == 401
    assert peer.put("/admin/faults", json=BREAK, headers=AUTHORIZED).status_code == 200


def test_with_identities_only_the_gateway_or_the_machine_itself_may(tmp_path: Path) -> None:
    tokens = new_tokens()
    environment = identity_environments(tokens)["db"]
    digests = environment["MICROSHOP_CALLER_DIGESTS"]
    app = create_db(Settings(data_dir=tmp_path, storage="memory", caller_digests=digests))
    peer = TestClient(app, client=("10.1.2.3", 40000))
    assert peer.put("/admin/faults", json=BREAK).status_code == 403
    as_order_service = {"Authorization": f"Bearer {tokens['order-service']}"}
    assert peer.put("/admin/faults", json=BREAK, headers=as_order_service).status_code == 403
    as_gateway = {"Authorization": f"Bearer {tokens['api-gateway']}"}
    assert peer.put("/admin/faults", json=BREAK, headers=as_gateway).status_code == 200
    local = TestClient(app, client=("127.0.0.1", 40000))
    assert local.delete("/admin/faults").status_code == 200


def test_the_public_gateway_never_takes_faults_from_another_machine(tmp_path: Path) -> None:
    app = create_gateway(Settings(data_dir=tmp_path, internal_token=TOKEN))
    visitor = TestClient(app, client=("203.0.113.7", 40000))
    assert visitor.put("/admin/faults", json=BREAK, headers=AUTHORIZED).status_code == 403

    local = TestClient(app, client=("127.0.0.1", 40000))
    assert local.put("/admin/faults", json=BREAK).status_code == 401
    assert local.put("/admin/faults", json=BREAK, headers=AUTHORIZED).status_code == 200


@pytest.mark.parametrize(
    ("distribution", "spread"),
    [
        (LatencyDistribution.FIXED, (0.2, 0.2)),
        (LatencyDistribution.UNIFORM, (0.0, 0.4)),
        (LatencyDistribution.EXPONENTIAL, (0.0, 600.0)),
    ],
)
def test_latency_distributions_keep_their_mean(
    distribution: LatencyDistribution, spread: tuple[float, float]
) -> None:
    faults = Faults(latency_seconds=0.2, latency_distribution=distribution)
    delays = [faults.request_delay() for _ in range(20_000)]
    assert spread[0] <= min(delays) and max(delays) <= spread[1]
    assert statistics.fmean(delays) == pytest.approx(0.2, rel=0.05)
    if distribution is LatencyDistribution.EXPONENTIAL:
        assert max(delays) > 1.0, "an exponential wait has a long tail"
