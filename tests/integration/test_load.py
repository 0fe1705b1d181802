"""`microshop load` against a real shop: it keeps to its rate, makes each flow, stops cleanly."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.shops import RunningShop

pytestmark = pytest.mark.integration


def load_command(shop: RunningShop, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "microshop", "load", "--url", shop.gateway_url, *arguments]


def order_count(shop: RunningShop) -> int:
    return len(httpx.get(shop.gateway_url + "/orders", params={"limit": 1000}).json())


def test_runs_each_flow_at_its_rate_for_its_duration(shop: RunningShop, tmp_path: Path) -> None:
    before = order_count(shop)
    results = tmp_path / "load.json"
    started = time.monotonic()
    finished = subprocess.run(
        load_command(shop, "--rate", "40", "--duration", "3", "--json", str(results)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started

    assert finished.returncode == 0, finished.stderr
    assert elapsed < 15
    assert "browse" in finished.stdout and "skipped 0" in finished.stdout
    flows = json.loads(results.read_text())["flows"]
    assert flows.keys() == {"browse", "place", "view"}
    visits = {flow: flows[flow]["visits"] for flow in flows}
    assert 100 <= sum(visits.values()) <= 125, flows  # 40 a second for 3 s
    assert all(count > 0 for count in visits.values()), flows
    assert all(flows[flow]["succeeded"] == visits[flow] for flow in flows), flows
    assert order_count(shop) - before == visits["place"]


def test_stops_on_sigterm_and_exits_0(shop: RunningShop) -> None:
    before = order_count(shop)
    process = subprocess.Popen(
        load_command(shop, "--rate", "10", "--mix", "place=1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while order_count(shop) == before:  # running, with its signal handlers in place
        assert time.monotonic() < deadline, "the load placed no order"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert "place" in stdout


def test_a_bad_mix_is_a_usage_error(shop: RunningShop) -> None:
    refused = subprocess.run(
        load_command(shop, "--mix", "shoplift=1"), capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 2
    assert "FLOW=WEIGHT" in refused.stderr
