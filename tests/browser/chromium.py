"""Debian's headless Chromium, driven by Playwright for Python: what the browser tests run in.

Playwright's own browser downloads are never used; the tests need `/usr/bin/chromium`. Under
CI=true a missing browser fails the run, since a skipped check there would pass unnoticed.
"""

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from tests.system_tools import missing_system_tool

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT_MS = 15_000


def playwright_api() -> ModuleType:
    """`playwright.sync_api`, or a skip (a failure in CI) that says how to get it."""
    try:
        import playwright.sync_api
    except ImportError:
        missing_system_tool("Playwright for Python is missing: pip install -e '.[dev]'")
    return playwright.sync_api


def require_chromium() -> None:
    if not CHROMIUM.is_file():
        missing_system_tool(f"Chromium is not installed at {CHROMIUM}: apt-get install chromium")


def screenshot(page: "Page", name: str) -> Path:
    """Saves what the page looks like now under test-artifacts/, for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path
