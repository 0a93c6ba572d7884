"""Shared fixtures. Tests that need the real data fail (never skip) when it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    configured = os.environ.get("BANDITOPS_DATA_DIR") or str(REPO.parent / "shared" / "data")
    path = Path(configured)
    if not (path / "adult" / "adult.data").is_file():
        pytest.fail(f"real datasets not found at {path}; set BANDITOPS_DATA_DIR (make test does)")
    return path


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium under Playwright, once per test module (see tests/browser.py).

    Not per session: Playwright's sync API keeps an event loop running in this thread while
    it is open, so a later module's ``asyncio.run`` would fail."""
    from tests.browser import chromium

    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser):
    """A fresh tab; the test fails if the page throws a JavaScript error."""
    from tests.browser import VIEWPORT

    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
