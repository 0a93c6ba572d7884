"""Static files shipped inside the package (dashboard, API docs): nothing from a CDN.

Every file under ``static/`` is read once, on the first request for any of them (in a
thread), into an index keyed by its relative path; a request can only name a key of that
index, so no client path ever reaches the disk. Text files are kept gzipped too and sent
compressed when the client accepts it. Assets are public: they hold code and styles, never
data (the data routes they call need a key).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from fastapi.responses import Response

from banditops.service.endpoints import HttpError

STATIC = Path(__file__).parent / "static"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".map": "application/json",
}
COMPRESSIBLE = (".html", ".js", ".css", ".json", ".svg", ".map")
# Files are named by the package version they ship with, so a day's caching is safe.
CACHE = "public, max-age=86400"
SECURITY_HEADERS = {"x-content-type-options": "nosniff"}
# Pages have routes of their own that send their Content-Security-Policy and frame ban
# (/dashboard); under /static/ they would be served without them (framed: clickjacking).
PAGES = (".html",)


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str


def load_index(root: Path = STATIC) -> dict[str, Asset]:
    """Every file under ``root`` with a known type, by its POSIX path relative to ``root``."""
    index: dict[str, Asset] = {}
    if not root.is_dir():
        return index
    for path in sorted(root.rglob("*")):
        media_type = TYPES.get(path.suffix.lower())
        if media_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        gzipped = (gzip.compress(body, 9, mtime=0)
                   if path.suffix.lower() in COMPRESSIBLE and len(body) > 1024 else None)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        index[path.relative_to(root).as_posix()] = Asset(body, gzipped, media_type, etag)
    return index


class Assets:
    """Answers ``GET /static/{path}`` from the index (404 for anything else)."""

    def __init__(self, root: Path = STATIC) -> None:
        self.root = root
        self._index: dict[str, Asset] | None = None
        self._lock = asyncio.Lock()

    async def index(self) -> dict[str, Asset]:
        if self._index is None:
            async with self._lock:
                if self._index is None:
                    self._index = await asyncio.to_thread(load_index, self.root)
        return self._index

    async def get(self, name: str) -> Asset:
        asset = (await self.index()).get(name)
        if asset is None:
            raise HttpError(404, "no such file")
        return asset

    async def serve(self, path: str, request: Request) -> Response:
        if path.lower().endswith(PAGES):
            raise HttpError(404, "no such file (pages are served at their own routes)")
        asset = await self.get(path)
        return answer(asset, request)


def answer(asset: Asset, request: Request, *, cache: str = CACHE,
           extra: dict[str, str] | None = None) -> Response:
    """The asset (gzipped if accepted), 304 when the client's ETag matches."""
    headers = {"etag": asset.etag, "cache-control": cache, "vary": "accept-encoding",
               **SECURITY_HEADERS, **(extra or {})}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = asset.gzipped
        headers["content-encoding"] = "gzip"
    return Response(body, media_type=asset.media_type, headers=headers)
