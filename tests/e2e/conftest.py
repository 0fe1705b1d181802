"""The end-to-end suite: the shop's contract, checked against whatever gateway
`MICROSHOP_GATEWAY_URL` names (a sandbox, a cluster, a laptop).

It assumes nothing about the data already there: every test uses customers of its own. Plain
`pytest` leaves this folder out (`testpaths` in pyproject.toml), since tests/integration covers the
same ground against a shop of its own; run it by name, `pytest tests/e2e`, with a gateway named.
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
        pytest.fail(
            f"{GATEWAY_URL_VARIABLE} is not set: name the gateway to test, or run "
            ".ci/e2e-in-sandbox.sh to test a fresh sandbox",
            pytrace=False,
        )
    return url.rstrip("/")


@pytest.fixture(scope="session")
def gateway(gateway_url: str) -> Iterator[httpx.Client]:
    # A cluster's gateway may be slow on its first requests; no proxy between us and it.
    with httpx.Client(base_url=gateway_url, timeout=30, trust_env=False) as client:
        yield client


@pytest.fixture
def customer() -> str:
    """A customer nobody else has used, so lists can be checked exactly."""
    return f"e2e-{uuid.uuid4().hex[:12]}"
