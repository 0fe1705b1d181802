"""`microshop bench` against a real shop: it places what it says and finds every order again."""

import json
import subprocess
import sys
from pathlib import Path

from tests.shops import RunningShop


def test_bench_places_orders_and_reads_them_all_back(shop: RunningShop, tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "microshop",
            "bench",
            "--url",
            shop.gateway_url,
            "--concurrency",
            "4",
            "--requests",
            "60",
            "--json",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    measured = json.loads(output.read_text())
    assert measured["orders"] == measured["acknowledged"] == 60
    assert measured["errors"] == {}
    assert measured["lost"] == 0
    assert 0 < measured["latency_ms"]["p50"] <= measured["latency_ms"]["p99"]
    assert measured["orders_per_second"] > 0
    assert "orders/s" in result.stdout
