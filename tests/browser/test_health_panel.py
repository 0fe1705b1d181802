"""The services panel in a real Chromium: four healthy services, then one that stops answering.

`microshop up` restarts a service that dies, so the service is frozen with SIGSTOP instead of
killed: it keeps its port but answers nothing, until SIGCONT.
"""

import os
import re
import signal

import httpx
import pytest

from microshop import __version__
from tests.browser.chromium import playwright_api, screenshot
from tests.browser.conftest import Visit
from tests.shops import RunningShop

expect = playwright_api().expect
pytestmark = pytest.mark.timeout(120)

SERVICES = ("api-gateway", "order-service", "payment-service", "db")


def test_the_four_services_are_shown_up(visit: Visit) -> None:
    page = visit.open()

    expect(page.locator("#health-list li")).to_have_count(4)
    for name in SERVICES:
        service = page.locator(f'#health-list li[data-service="{name}"]')
        expect(service).to_have_attribute("data-state", "up")
        expect(service.locator(".badge")).to_have_text("up")
        expect(service).to_contain_text(re.compile(rf"version {re.escape(__version__)}, [\d.]+ ms"))
    summary = page.locator("#health-summary")
    expect(summary).to_have_text("All 4 services are up.")
    expect(summary).to_have_attribute("aria-live", "polite")
    screenshot(page, "storefront-healthy")


def test_a_stopped_service_is_shown_down_and_its_orders_are_paid_later(
    visit: Visit, shop: RunningShop
) -> None:
    page = visit.open()
    payment = page.locator('#health-list li[data-service="payment-service"]')
    expect(payment).to_have_attribute("data-state", "up")
    result = page.locator("#order-result")

    pid = shop.pid("payment-service")
    os.kill(pid, signal.SIGSTOP)
    try:
        expect(payment).to_have_attribute("data-state", "down")
        expect(payment).to_contain_text("payment-service did not answer within")
        expect(page.locator("#health-summary")).to_have_text("Down: payment-service.")
        for name in ("api-gateway", "order-service", "db"):
            expect(page.locator(f'#health-list li[data-service="{name}"]')).to_have_attribute(
                "data-state", "up"
            )

        page.get_by_label("Item", exact=True).fill("kite")
        page.get_by_label("Price", exact=True).fill("15")
        page.get_by_label("Customer", exact=True).fill("Ida")
        page.get_by_role("button", name="Place order").click()
        expect(result).to_contain_text("the payment is pending")
        order = page.locator("#orders-body tr", has_text="kite")
        expect(order.locator(".badge")).to_have_text("pending")
        screenshot(page, "storefront-payment-down")
    finally:
        os.kill(pid, signal.SIGCONT)

    expect(payment).to_have_attribute("data-state", "up")
    # Nobody reloads: the list shows the order paid once order-service has settled it.
    expect(order.locator(".badge")).to_have_text("paid", timeout=30_000)


def test_faults_switched_on_at_run_time_are_shown_until_cleared(
    visit: Visit, shop: RunningShop
) -> None:
    page = visit.open()
    payment = page.locator('#health-list li[data-service="payment-service"]')
    expect(payment).to_have_attribute("data-state", "up")
    expect(payment.locator(".faults")).to_have_count(0)
    admin = shop.url("payment-service") + "/admin/faults"

    switched = httpx.put(admin, json={"error_rate": 0.5, "latency_seconds": 0.05})
    assert switched.status_code == 200, switched.text
    try:
        expect(payment.locator(".faults")).to_have_text(
            "Faults on: 0.05 s fixed latency, 50% answered 503."
        )
        expect(page.locator("#health-summary")).to_have_text(
            "All 4 services are up. Faults on: payment-service."
        )
        screenshot(page, "storefront-faults-on")
    finally:
        assert httpx.delete(admin).status_code == 200

    expect(payment.locator(".faults")).to_have_count(0)
    expect(page.locator("#health-summary")).to_have_text("All 4 services are up.")
