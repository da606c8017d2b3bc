"""Browser tests: headless Chromium from Debian's packages, driven by Playwright's sync API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.axe import axe_violations, describe

# Playwright's sync API runs an event loop in this thread; Django's async-safety check would
# refuse ORM calls from live_server fixtures otherwise (microsoft/playwright-pytest#29, #46).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Launch /usr/bin/chromium once per session, or skip saying why."""
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context per test (no cookies shared between users).

    Every portal page the test loaded (GET, 200, HTML) is checked with axe-core when the test
    ends: visited again in the same context, one by one (tests/support/axe.py).
    """
    # The emulators' certificates come from a private CA the browser does not know.
    context = chromium.new_context(
        ignore_https_errors=True, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    page.set_default_timeout(15000)
    visited: list[str] = []
    page.on("response", lambda response: _note_page(response, visited))
    yield page
    try:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.passed:
            _check_pages(page, visited, request)
    finally:
        context.close()


def _note_page(response: Any, visited: list[str]) -> None:
    req = response.request
    if (
        req.is_navigation_request()
        and req.method == "GET"
        and response.status == 200
        and "text/html" in (response.headers.get("content-type") or "")
        and response.url not in visited
    ):
        visited.append(response.url)


def _check_pages(page: Any, visited: list[str], request: pytest.FixtureRequest) -> None:
    if "live_server" not in request.fixturenames:
        return
    origin = str(request.getfixturevalue("live_server").url)
    failures = []
    for url in (u for u in visited if u.startswith(origin)):
        page.goto(url)
        violations = axe_violations(page)
        if violations:
            failures.append(describe(url, violations))
    assert not failures, "axe-core found serious or critical violations:\n" + "\n".join(failures)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Keep each phase's report on the item, so the page check runs after passing tests only."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def portal(live_server: Any, azure_settings: Any, settings: Any, emulators: Any) -> str:
    """The live portal pointed at the emulators, with their DPS instances registered."""
    from django.core.cache import cache
    from django.core.management import call_command

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    call_command(
        "dps_instance_import", "--from-endpoints", str(emulators.state_dir / "endpoints.json")
    )
    return str(live_server.url)
