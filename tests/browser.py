"""A real browser for tests: the distribution's Chromium, driven by Playwright.

``make test`` installs Debian's ``chromium`` package when ``/usr/bin/chromium`` is missing;
Playwright launches that binary (``executable_path``). Playwright's own browser download
(``playwright install``) is never used. The fixtures live in ``tests/conftest.py``:
``browser`` (one Chromium per test session) and ``page`` (a fresh tab per test, failing the
test if the page throws a JavaScript error). The helpers here work on any page.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, Route, sync_playwright

CHROMIUM = Path(os.environ.get("BANDITOPS_CHROMIUM", "/usr/bin/chromium"))
VIEWPORT = {"width": 1400, "height": 900}


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium from the distribution; a clear failure (never a skip) without it."""
    if not CHROMIUM.is_file():
        raise FileNotFoundError(
            f"{CHROMIUM} not found: the browser tests use Debian's chromium package "
            "(`make test` installs it; or `apt-get install chromium`, or set "
            "BANDITOPS_CHROMIUM to another Chromium binary)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


def forbid_network(page: Page, allow: str | None = None) -> list[str]:
    """Abort every request that is not for a ``file:`` or ``data:`` URL (or under the
    origin ``allow``, e.g. a test server's ``http://127.0.0.1:8123``); returns the list the
    aborted URLs are appended to (a self-contained page leaves it empty)."""
    aborted: list[str] = []

    def abort(route: Route) -> None:
        aborted.append(route.request.url)
        route.abort()

    allowed = "|" + re.escape(allow.rstrip("/") + "/") if allow else ""
    page.route(re.compile(rf"^(?!file:|data:{allowed}).*"), abort)
    return aborted


def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot, kept to be looked at: in ``$BANDITOPS_SCREENSHOTS``, default
    ``screenshots/`` at the repository root (git ignores it)."""
    folder = Path(os.environ.get("BANDITOPS_SCREENSHOTS")
                  or Path(__file__).resolve().parents[1] / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    return path


def image_sizes(page: Page) -> list[tuple[int, int]]:
    """(naturalWidth, naturalHeight) of every <img> once loaded: (0, 0) for a broken one."""
    page.wait_for_load_state("load")
    return [tuple(size) for size in page.evaluate(
        "[...document.images].map(i => [i.complete ? i.naturalWidth : 0, i.naturalHeight])")]


def visible_text(page: Page) -> str:
    """The text a reader sees (closed <details> and hidden elements left out), whitespace
    collapsed to single spaces."""
    return " ".join(page.inner_text("body").split())


def states(text: str, value: int | float | str, *words: str) -> bool:
    """Whether a sentence of ``text`` gives ``value`` (integers as printed: 12,000) as a whole
    token next to every one of ``words`` (case-insensitive), e.g. ``states(text, 400,
    "chunk")`` for "... cut into chunks of 400 requests ...".

    >>> states("Rows are cut into chunks of 400 requests. Labels come back late.", 400, "chunk")
    True
    >>> states("Chunks of 4,000 or 1400 requests; 400 labels.", 400, "chunk")
    False
    >>> states("the data in its order; 12,000 rows, reward: accuracy", 12_000, "rows")
    True
    """
    shown = f"{value:,}" if isinstance(value, int) else str(value)
    number = re.compile(rf"(?<![\w.,]){re.escape(shown)}(?![\w]|[.,]\d)")
    return any(number.search(sentence) and all(w.lower() in sentence.lower() for w in words)
               for sentence in re.split(r"(?<=[.;:!?])\s+", text))


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG from its header."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return width, height
