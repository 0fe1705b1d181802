"""Inputs generated from every service's own OpenAPI document, under every check schemathesis has:
valid input is taken and invalid refused, and each answer is what the document says."""

from pathlib import Path

import pytest

from tests.generated_inputs import assert_conforms
from tests.shops import RunningShop

SERVICES = ["api-gateway", "order-service", "payment-service", "db"]


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_answers_as_its_openapi_document_says(
    shop: RunningShop, service: str, tmp_path: Path
) -> None:
    assert_conforms(shop.url(service) + "/openapi.json", tmp_path, "--max-examples", "20")
