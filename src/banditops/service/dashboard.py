"""``GET /dashboard``: the operator's page, an HTML shell with no data in it.

The shell is public, like its script and styles (``/static/dashboard/``); everything it shows
comes from the API with the key the operator types, kept in the tab's ``sessionStorage``
only. A strict Content-Security-Policy makes the browser refuse any script, style, frame or
connection that is not from this server: no inline code, nothing from elsewhere, and the page
cannot be framed (clickjacking on the admin buttons).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from banditops.service.assets import Assets, answer

PAGE = "dashboard/index.html"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
HEADERS = {"content-security-policy": CSP, "x-frame-options": "DENY",
           "referrer-policy": "no-referrer", "cross-origin-opener-policy": "same-origin"}


class Dashboard:
    def __init__(self, assets: Assets) -> None:
        self.assets = assets

    async def page(self, request: Request) -> Response:
        """The shell, revalidated on every load (its ETag makes that a 304)."""
        return answer(await self.assets.get(PAGE), request, cache="no-cache", extra=HEADERS)
