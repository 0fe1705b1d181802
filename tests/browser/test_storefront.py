"""The storefront in a real Chromium: the form, the list with its pages, refreshing, a phone."""

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.browser.chromium import playwright_api, screenshot
from tests.browser.conftest import Visit, visiting
from tests.shops import RunningShop

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

expect = playwright_api().expect
pytestmark = pytest.mark.timeout(120)

PAGE_SIZE = 10
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def api(shop: RunningShop) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shop.gateway_url, timeout=10) as client:
        yield client


def order_ids(api: httpx.Client) -> list[int]:
    return [order["id"] for order in api.get("/orders", params={"limit": 1000}).json()]


def place_with_the_form(page: "Page", item: str, price: str, customer: str) -> None:
    page.get_by_label("Item", exact=True).fill(item)
    page.get_by_label("Price", exact=True).fill(price)
    page.get_by_label("Customer", exact=True).fill(customer)
    page.get_by_role("button", name="Place order").click()


def row(page: "Page", order_id: int | str) -> "Locator":
    return page.locator(f'#orders-body tr[data-order-id="{order_id}"]')


def test_the_page_and_everything_it_loads_come_from_the_gateway(visit: Visit) -> None:
    response = visit.page.goto(visit.url + "/")
    page = visit.page

    assert response is not None and response.ok
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    expect(page).to_have_title("microshop")
    expect(page.locator("#health-list li")).to_have_count(4)
    expect(page.get_by_role("table")).to_be_visible()
    paths = {url.removeprefix(visit.url) for url in visit.requests}
    assert {"/", "/static/app.css", "/static/app.js", "/status"} <= paths
    assert f"/orders?limit={PAGE_SIZE}" in paths
    assert all(url.startswith(visit.url + "/") for url in visit.requests)
    assert visit.blocked == []
    assert visit.console_errors == []


def test_an_order_placed_with_the_keyboard_appears_with_its_status(
    visit: Visit, api: httpx.Client
) -> None:
    page = visit.open()
    result = page.locator("#order-result")
    expect(result).to_have_attribute("aria-live", "polite")

    page.keyboard.press("Tab")
    expect(page.get_by_label("Item", exact=True)).to_be_focused()
    page.keyboard.type("t-shirt")
    page.keyboard.press("Tab")
    page.keyboard.type("100")
    page.keyboard.press("Tab")
    page.keyboard.type("Gregor")
    page.keyboard.press("Enter")

    expect(result).to_have_text(re.compile(r"^Order #\d+ placed: t-shirt for Gregor, paid\.$"))
    match = re.search(r"#(\d+)", result.inner_text())
    assert match is not None
    order_id = int(match.group(1))
    expect(row(page, order_id)).to_contain_text("t-shirt")
    expect(row(page, order_id).locator(".badge")).to_have_text("paid")
    expect(row(page, order_id)).to_have_class("fresh")
    assert api.get(f"/orders/{order_id}").json()["order"]["status"] == "paid"
    # Ready for the next order: the item and price are cleared, the customer is kept.
    expect(page.get_by_label("Item", exact=True)).to_have_value("")
    expect(page.get_by_label("Customer", exact=True)).to_have_value("Gregor")

    place_with_the_form(page, "lamp", "20000", "Ann")
    expect(result).to_contain_text("lamp for Ann; the payment was declined.")
    expect(page.locator('#orders-body tr[data-status="declined"]')).to_contain_text("lamp")


def test_an_error_from_the_api_is_shown_with_its_detail(visit: Visit, api: httpx.Client) -> None:
    before = order_ids(api)
    page = visit.open()

    # Blank is allowed by the browser's own checks, so the shop's validation answers.
    place_with_the_form(page, "   ", "5", "Ann")

    result = page.locator("#order-result")
    expect(result).to_have_text(re.compile(r"^The order was not placed: item: .*must not be blank"))
    expect(result).to_have_attribute("data-tone", "error")
    item = page.get_by_label("Item", exact=True)
    expect(item).to_have_attribute("aria-invalid", "true")
    expect(item).to_be_focused()
    assert order_ids(api) == before


def test_orders_are_paged_by_the_link_header(visit: Visit, api: httpx.Client) -> None:
    while len(order_ids(api)) <= 2 * PAGE_SIZE:
        api.post("/orders", json={"item": "sock", "price": 3, "customer": "Pat"})
    ids = order_ids(api)
    page = visit.open()
    pages = page.get_by_role("navigation", name="Pages of orders")
    previous = pages.get_by_role("button", name="Previous page")
    following = pages.get_by_role("button", name="Next page")
    showing = page.locator("#orders-range")

    expect(page.locator("#orders-body tr")).to_have_count(PAGE_SIZE)
    expect(showing).to_have_text(f"Orders #{ids[0]} to #{ids[PAGE_SIZE - 1]}")
    expect(previous).to_have_attribute("aria-disabled", "true")

    following.focus()
    page.keyboard.press("Enter")
    expect(showing).to_have_text(f"Orders #{ids[PAGE_SIZE]} to #{ids[2 * PAGE_SIZE - 1]}")
    expect(following).to_be_focused()
    expect(previous).to_have_attribute("aria-disabled", "false")
    assert f"{visit.url}/orders?limit={PAGE_SIZE}&after={ids[PAGE_SIZE - 1]}" in visit.requests

    previous.click()
    expect(showing).to_have_text(f"Orders #{ids[0]} to #{ids[PAGE_SIZE - 1]}")
    expect(previous).to_have_attribute("aria-disabled", "true")


def test_the_list_refreshes_by_itself(visit: Visit, api: httpx.Client) -> None:
    if len(order_ids(api)) % PAGE_SIZE == 0:  # leave room on the last page
        api.post("/orders", json={"item": "cap", "price": 8, "customer": "Lee"})
    page = visit.open()
    showing = page.locator("#orders-range")
    following = page.get_by_role("button", name="Next page")
    expect(showing).not_to_have_text("")
    while following.get_attribute("aria-disabled") == "false":
        before = showing.inner_text()
        following.click()
        expect(showing).not_to_have_text(before)

    placed = api.post("/orders", json={"item": "scarf", "price": 30, "customer": "Kim"}).json()

    order_id = placed["order"]["id"]
    expect(row(page, order_id)).to_contain_text("scarf", timeout=10_000)
    expect(row(page, order_id).locator(".badge")).to_have_text("paid")
    screenshot(page, "storefront-orders")


def test_the_page_fits_a_phone(browser: "Browser", shop: RunningShop, api: httpx.Client) -> None:
    api.post("/orders", json={"item": "umbrella", "price": 25, "customer": "Noor"})
    with visiting(browser, shop, viewport=PHONE, is_mobile=True, has_touch=True) as phone:
        page = phone.open()
        expect(page.locator("#orders-body tr").first).to_be_visible()
        expect(page.locator("#health-list li")).to_have_count(4)

        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        for name in ("Item", "Price", "Customer"):
            box = page.get_by_label(name, exact=True).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        # The customer column gives way to the name under the item.
        expect(page.locator("th.customer")).to_be_hidden()
        expect(page.locator("#orders-body .customer-inline").first).to_be_visible()
        screenshot(page, "storefront-phone")
