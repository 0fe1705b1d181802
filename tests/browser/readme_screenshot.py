"""Makes the README's picture, docs/images/storefront.png: run it from the repository root as
`python -m tests.browser.readme_screenshot`.

It starts a shop of its own in a temporary directory, places a few orders and photographs the
page in Chromium, the way the browser tests do.
"""

import tempfile
from pathlib import Path

import httpx

from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS, playwright_api, require_chromium
from tests.shops import start_shop

IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "storefront.png"
ORDERS = [
    {"item": "t-shirt", "price": 100, "customer": "Gregor"},
    {"item": "hat", "price": 19.99, "customer": "Ann"},
    {"item": "lamp", "price": 20000, "customer": "Ann"},
    {"item": "mug", "price": 12.5, "customer": "Noor"},
]


def main() -> None:
    require_chromium()
    api = playwright_api()
    with tempfile.TemporaryDirectory() as directory:
        shop = start_shop(Path(directory))
        try:
            for order in ORDERS:
                httpx.post(shop.gateway_url + "/orders", json=order, timeout=10).raise_for_status()
            with api.sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
                )
                page = browser.new_page(
                    viewport={"width": 1100, "height": 760}, locale="en-US", color_scheme="light"
                )
                page.goto(shop.gateway_url + "/")
                page.get_by_label("Item", exact=True).fill("scarf")
                page.get_by_label("Price", exact=True).fill("30")
                page.get_by_label("Customer", exact=True).fill("Kim")
                page.get_by_role("button", name="Place order").click()
                api.expect(page.locator("#orders-body tr")).to_have_count(len(ORDERS) + 1)
                api.expect(page.locator('#health-list li[data-state="up"]')).to_have_count(4)
                # A second look at the services, on warm connections, shows typical latencies.
                checked = page.locator("#health-checked")
                api.expect(checked).not_to_have_text("")
                api.expect(checked).not_to_have_text(checked.inner_text())
                IMAGE.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=IMAGE, full_page=True)
                browser.close()
        finally:
            shop.stop()
    print(IMAGE)


if __name__ == "__main__":
    main()
