"""A real headless browser for tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download does not work here (and plants are air-gapped), so
the system Chromium is launched through ``executable_path``. Import the fixtures into
a conftest.py:

    from tests.helpers.browser import browser, page, screenshots  # noqa: F401

    def test_x(page, screenshots):
        page.goto(url)
        screenshots.take(page, "after-login")     # <tmp>/web-screenshots/<test>-after-login.png

``browser`` is module-scoped (see there); ``page`` is a fresh context (no shared storage) per test,
1280x800, and fails the test on any browser console error. ``browser_page`` is a page in
a browser of its own (the store's tests). Tests skip when chromium or playwright is
missing (``scripts/test.sh`` installs both). The screenshot folder is printed at the end
of the session.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Every Playwright wait is bounded by this (ms); pytest-timeout bounds the test itself.
ACTION_TIMEOUT_MS = 15000


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Screenshots:
    """Writes ``<folder>/<test name>-<n>-<label>.png``; ``paths`` lists what was written."""

    def __init__(self, folder: Path, test_name: str) -> None:
        self.folder = folder
        self.prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        self.paths: list[Path] = []

    def take(self, page: Any, label: str, *, full_page: bool = True) -> Path:
        path = self.folder / f"{self.prefix}-{len(self.paths) + 1:02d}-{label}.png"
        page.screenshot(path=str(path), full_page=full_page)
        self.paths.append(path)
        return path


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    folder = Path(os.environ.get("WEB_SCREENSHOTS") or tempfile.mkdtemp(prefix="web-screenshots-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# Module scope, not session: Playwright's sync API keeps an event loop running in the main thread
# while it is open, and every later asyncio test (or asyncio.run) in the session would fail on it.
@pytest.fixture(scope="module")
def browser(screenshot_dir: Path) -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium is not installed (scripts/test.sh installs the Debian package)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            # --no-sandbox: the tests run as root in a container, where Chromium's sandbox cannot start.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()
            print(f"\nweb screenshots: {screenshot_dir}")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = context.new_page()
    # JavaScript errors and Content-Security-Policy violations land here; tests may clear
    # the ones they provoke on purpose, and any left over fail the test.
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    try:
        yield page
        assert page.console_errors == [], f"errors in the browser console: {page.console_errors}"
    finally:
        context.close()


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A page in a browser of its own (the store's tests use this one)."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium is not installed (scripts/test.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


@pytest.fixture
def screenshots(screenshot_dir: Path, request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots(screenshot_dir, request.node.name)
