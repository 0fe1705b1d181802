"""The sandbox server's page in a real Chromium: a real sandbox listed, extended and deleted."""

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.browser.chromium import TIMEOUT_MS, playwright_api, screenshot
from tests.browser.conftest import DESKTOP
from tests.sandbox.conftest import SandboxCli, SandboxServer, start_sandbox_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Page, Route

expect = playwright_api().expect
pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    cli = SandboxCli(tmp_path_factory.mktemp("sandbox-page") / "home")
    running = start_sandbox_server(cli.home)
    yield running
    assert running.stop() == 0, running.output()[-4000:]
    cli.run("delete", "--all")


@pytest.fixture
def page(browser: "Browser", server: SandboxServer) -> Iterator["Page"]:
    context = browser.new_context(locale="en-US", service_workers="block", viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    blocked: list[str] = []
    errors: list[str] = []

    def only_the_server(route: "Route") -> None:
        if route.request.url.startswith(server.url + "/"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_server)
    opened = context.new_page()
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [] and blocked == []


def test_the_page_lists_extends_and_deletes_a_real_sandbox(
    page: "Page", server: SandboxServer
) -> None:
    with server.client() as client:
        created = client.post(
            "/sandboxes",
            params={"wait": 120},
            json={"name": "shown", "duration": "10m", "owner": "ci-bot", "database": "memory"},
        )
        assert created.status_code == 201, created.text
    gateway = created.json()["gateway_url"]

    page.goto(server.url + "/")
    message = page.locator("#message")
    expect(message).to_have_text("Enter the server's API token to see its sandboxes.")
    page.get_by_label("API token").fill("not-the-token")
    page.get_by_role("button", name="Use token").click()
    expect(message).to_contain_text("401")

    page.get_by_label("API token").fill(server.token)
    page.get_by_role("button", name="Use token").click()
    row = page.locator('tr[data-name="shown"]')
    expect(row).to_contain_text("ready")
    expect(row).to_contain_text("ci-bot")
    expect(row.get_by_role("link", name=gateway)).to_have_attribute("href", gateway)
    expect(row).to_contain_text("api-gateway: ready")
    expect(row.locator(".time-left")).to_have_text(re.compile(r"^9m\d\ds$"))
    expect(message).to_have_text("")
    screenshot(page, "sandbox-server-page")

    row.get_by_role("button", name="Extend 30 min shown").click()
    expect(row.locator(".time-left")).to_have_text(re.compile(r"^39m\d\ds$"))

    questions: list[str] = []

    def answer(dialog: "Dialog") -> None:
        questions.append(dialog.message)
        if len(questions) == 1:
            dialog.dismiss()
        else:
            dialog.accept()

    page.on("dialog", answer)
    delete = row.get_by_role("button", name="Delete shown")
    delete.focus()
    page.wait_for_timeout(2500)  # a refresh redraws the table; the focus stays on the button
    expect(page.get_by_role("button", name="Delete shown")).to_be_focused()
    page.keyboard.press("Enter")  # dismissed: nothing happens
    expect(row).to_contain_text("ready")
    delete.click()
    expect(row).to_have_count(0)
    assert questions == ["Delete sandbox shown and everything in it?"] * 2
    expect(page.locator("#count")).to_have_text("0")
    with server.client() as client:
        assert client.get("/sandboxes/shown").status_code == 404
