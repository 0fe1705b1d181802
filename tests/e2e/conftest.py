"""The end-to-end suite: the shop's contract, checked against whatever gateway
`MICROSHOP_GATEWAY_URL` names (a sandbox, a cluster, a laptop).

It assumes nothing about the data already there: every test uses customers of its own. Without
`MICROSHOP_GATEWAY_URL` every test here is skipped, so plain `pytest` does not run these twice
(tests/integration covers the same ground against a shop of its own).
"""

import os
import uuid
from collections.abc import Iterator

import httpx
import pytest

GATEWAY_URL_VARIABLE = "MICROSHOP_GATEWAY_URL"


@pytest.fixture(scope="session")
def gateway_url() -> str:
    url = os.environ.get(GATEWAY_URL_VARIABLE)
    if not url:
        pytest.skip(f"{GATEWAY_URL_VARIABLE} is not set: no gateway to test end to end")
    return url.rstrip("/")


@pytest.fixture(autouse=True)
def require_gateway(gateway_url: str) -> None:
    """Skips every test of this folder when no gateway is named."""


@pytest.fixture(scope="session")
def gateway(gateway_url: str) -> Iterator[httpx.Client]:
    # A cluster's gateway may be slow on its first requests; no proxy between us and it.
    with httpx.Client(base_url=gateway_url, timeout=30, trust_env=False) as client:
        yield client


@pytest.fixture
def customer() -> str:
    """A customer nobody else has used, so lists can be checked exactly."""
    return f"e2e-{uuid.uuid4().hex[:12]}"
