"""Static assets: only files in the shipped index are served; gzip, ETag and nosniff."""

from __future__ import annotations

import asyncio
import gzip

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from banditops.service.assets import Assets, load_index
from banditops.service.endpoints import HttpError


def serve(root, path: str, **headers: str) -> httpx.Response:
    assets = Assets(root)
    app = FastAPI()

    @app.exception_handler(HttpError)
    async def handle(_: Request, error: HttpError):
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.get("/static/{path:path}")
    async def static(path: str, request: Request):
        return await assets.serve(path, request)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.get(path if path.startswith("/") else f"/static/{path}",
                                  headers=headers)
    return asyncio.run(go())


def test_only_known_files_with_known_types_are_indexed(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "page.js").write_text("let x = 1;\n" * 200)
    (tmp_path / "secret.txt").write_text("no type, never served")
    (tmp_path / "app" / "small.css").write_text("a{}")
    index = load_index(tmp_path)
    assert sorted(index) == ["app/page.js", "app/small.css"]
    assert index["app/page.js"].gzipped is not None  # over 1 KB: kept compressed too
    assert index["app/small.css"].gzipped is None
    assert gzip.decompress(index["app/page.js"].gzipped) == index["app/page.js"].body


def test_served_gzipped_with_etag_and_304(tmp_path):
    (tmp_path / "page.js").write_text("let x = 1;\n" * 200)
    plain = serve(tmp_path, "page.js", **{"accept-encoding": "identity"})
    assert plain.status_code == 200 and plain.text == "let x = 1;\n" * 200
    assert plain.headers["content-type"].startswith("text/javascript")
    assert plain.headers["x-content-type-options"] == "nosniff"
    assert "content-encoding" not in plain.headers
    zipped = serve(tmp_path, "page.js", **{"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(plain.content) / 5
    again = serve(tmp_path, "page.js", **{"if-none-match": plain.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_paths_outside_the_index_are_404(tmp_path):
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "a.js").write_text("1")
    (tmp_path / "b.js").write_text("2")
    for path in ("../b.js", "/static/inside/../../b.js", "/static/%2e%2e/b.js", "inside",
                 "inside/", "/static/inside%2fa.js", "nothing.js", "/etc/passwd"):
        answer = serve(tmp_path / "inside", path)
        assert answer.status_code == 404 and answer.content != b"2", path
    assert serve(tmp_path / "inside", "a.js").text == "1"


def test_pages_are_not_served_under_static(tmp_path):
    """/static/dashboard/index.html was the dashboard without its Content-Security-Policy and
    X-Frame-Options: a page anyone could frame. Pages only have their own routes."""
    (tmp_path / "dashboard").mkdir()
    (tmp_path / "dashboard" / "index.html").write_text("<!doctype html><p>the-page</p>")
    for path in ("dashboard/index.html", "dashboard/INDEX.HTML"):
        answer = serve(tmp_path, path)
        assert answer.status_code == 404 and b"the-page" not in answer.content, path
    assert asyncio.run(Assets(tmp_path).get("dashboard/index.html")).body.endswith(b"</p>")
