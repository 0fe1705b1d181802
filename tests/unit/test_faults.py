"""The fault switch's rules that a single machine cannot show with real processes: who may change
faults when no token is set, and what the latency distributions draw."""

import statistics
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from microshop.common.faults import Faults, LatencyDistribution
from microshop.common.settings import Settings
from microshop.services.gateway.app import create


@pytest.mark.parametrize("client_address", ["203.0.113.7", "10.1.2.3", "::ffff:198.51.100.1"])
def test_without_a_token_only_callers_on_the_same_machine_may_change_faults(
    tmp_path: Path, client_address: str
) -> None:
    app = create(Settings(data_dir=tmp_path))
    with TestClient(app, client=(client_address, 40000)) as visitor:
        refused = visitor.put("/admin/faults", json={"error_rate": 1})
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert visitor.get("/admin/faults").status_code == 403
    assert not app.state.service.faults.faults.active
    with TestClient(app, client=("127.0.0.1", 40000)) as local:
        assert local.put("/admin/faults", json={"error_rate": 1}).status_code == 200
    assert app.state.service.faults.faults.error_rate == 1


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
