"""Fixtures for the browser tests: one Chromium per module, a fresh browser context per test."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.chromium import (
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    playwright_api,
    require_chromium,
)
from tests.shops import RunningShop, start_shop

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Route

DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def browser() -> Iterator["Browser"]:
    """Per module, not per session: Playwright's synchronous API keeps an event loop running in
    this thread until it stops, and the asyncio tests after the browser ones need the thread."""
    require_chromium()
    api = playwright_api()
    api.expect.set_options(timeout=TIMEOUT_MS)
    with api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningShop]:
    """The usual shop, but sweeping pending orders often, so that a test sees one settle soon."""
    running = start_shop(
        tmp_path_factory.mktemp("shop"), environment={"MICROSHOP_SETTLE_INTERVAL": "0.5"}
    )
    yield running
    assert running.stop() == 0, running.output()[-4000:]


@dataclass
class Visit:
    """The storefront in one browser context, with every request it made and every error."""

    page: "Page"
    url: str
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    script_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def open(self) -> "Page":
        self.page.goto(self.url + "/")
        return self.page


@contextmanager
def visiting(browser: "Browser", shop: RunningShop, **options: Any) -> Iterator[Visit]:
    context = browser.new_context(locale="en-US", service_workers="block", **options)
    context.set_default_timeout(TIMEOUT_MS)
    visit = Visit(context.new_page(), shop.gateway_url)

    def only_the_shop(route: "Route") -> None:
        # Nothing leaves the machine: a request elsewhere is recorded and never sent.
        if route.request.url.startswith(shop.gateway_url + "/"):
            route.continue_()
        else:
            visit.blocked.append(route.request.url)
            route.abort()

    def on_console(message: "ConsoleMessage") -> None:
        if message.type == "error":
            visit.console_errors.append(message.text)

    context.route("**/*", only_the_shop)
    visit.page.on("request", lambda request: visit.requests.append(request.url))
    visit.page.on("pageerror", lambda error: visit.script_errors.append(str(error)))
    visit.page.on("console", on_console)
    try:
        yield visit
    finally:
        context.close()
    assert not visit.script_errors, visit.script_errors


@pytest.fixture
def visit(browser: "Browser", shop: RunningShop) -> Iterator[Visit]:
    with visiting(browser, shop, viewport=DESKTOP) as desktop:
        yield desktop
