"""Inputs generated from every service's own OpenAPI document: no 5xx, whatever arrives."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.shops import RunningShop

SERVICES = ["api-gateway", "order-service", "payment-service", "db"]


@pytest.mark.parametrize("service", SERVICES)
def test_no_generated_input_gets_a_server_error(
    shop: RunningShop, service: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            shop.url(service) + "/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--report-dir",
            str(tmp_path),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
