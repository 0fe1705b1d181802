"""Inputs generated from every service's own OpenAPI document: no 5xx, whatever arrives."""

from pathlib import Path

import pytest

from tests.generated_inputs import assert_no_server_error
from tests.shops import RunningShop

SERVICES = ["api-gateway", "order-service", "payment-service", "db"]


@pytest.mark.parametrize("service", SERVICES)
def test_no_generated_input_gets_a_server_error(
    shop: RunningShop, service: str, tmp_path: Path
) -> None:
    assert_no_server_error(shop.url(service) + "/openapi.json", tmp_path, "--max-examples", "40")
