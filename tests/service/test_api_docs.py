"""The API description tells the truth: every answer a real server gives, success or error,
has its status, content type, headers and body documented for its operation; each
operation's security is the guard's access map; and /docs and /redoc work offline in a real
browser (Chromium), where "Try it out" calls predict with a key.

Screenshots go to $BANDITOPS_SCREENSHOTS (default: screenshots/ at the repository root).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import time
from typing import Any

import httpx
import pandas as pd
import pytest
from jsonschema import Draft202012Validator

from banditops.errors import StoreError
from banditops.service.app import create_app
from banditops.service.config import ServiceConfig
from tests.browser import forbid_network, screenshot
from tests.service.conftest import ADMIN_KEY, CLIENT_KEY, Server, write_config
from tests.service.models import FEATURES, as_features, make_rows

DEPLOYMENTS = """
[deployments.main]
policy = "thompson"
policy_params = { seed = 1 }
features = FEATURES
labels = [0, 1]
shadow = { mode = "all" }
release = { mode = "dark" }
[[deployments.main.versions]]
name = "good"
artifact = "ARTIFACTS/good.skops"
[[deployments.main.versions]]
name = "bad"
artifact = "ARTIFACTS/bad.skops"

[deployments.brief]
features = FEATURES
feedback_ttl_seconds = 0.5
[[deployments.brief.versions]]
name = "v1"
artifact = "ARTIFACTS/good.skops"

[deployments.broken]
features = FEATURES
[[deployments.broken.versions]]
name = "raises"
artifact = "ARTIFACTS/exploding.joblib"
"""
X, Y = make_rows(40, seed=11)
ONE = as_features(X[0])


@pytest.fixture(scope="module")
def server(tmp_path_factory, artifacts):
    folder = tmp_path_factory.mktemp("docs")
    config = write_config(folder, artifacts, DEPLOYMENTS.replace("ARTIFACTS", str(artifacts)),
                          allow_pickle=True,
                          extra="max_batch = 20\nmax_body_bytes = 65536\n"
                                "body_timeout_seconds = 1")
    running = Server(config).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def description(server) -> dict[str, Any]:
    return httpx.get(f"{server.url}/openapi.json", timeout=30).json()


def operation_of(description: dict[str, Any], method: str, url_path: str
                 ) -> tuple[str, dict[str, Any]]:
    """The documented (template, operation) a concrete path and method fall under."""
    for template, item in description["paths"].items():
        pattern = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, url_path) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"{method} {url_path} is not in the description")


def conforms(description: dict[str, Any], response: httpx.Response) -> tuple[str, str]:
    """Asserts ``response`` is documented for its operation: status, content type, body
    (JSON Schema 2020-12 against the description's components) and Retry-After."""
    request = response.request
    template, operation = operation_of(description, request.method, request.url.path)
    where = f"{request.method} {request.url.path} -> {response.status_code} {response.text[:300]}"
    status = str(response.status_code)
    assert status in operation["responses"], f"undocumented status: {where}"
    documented = operation["responses"][status]
    kind = response.headers["content-type"].split(";")[0].strip()
    assert kind in documented.get("content", {}), f"undocumented content type {kind}: {where}"
    schema = documented["content"][kind]["schema"]
    if kind == "application/json":
        validator = Draft202012Validator({**schema, "components": description["components"]})
        problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                    for e in validator.iter_errors(response.json())]
        assert not problems, f"answer does not fit its schema: {where}: {problems[:5]}"
    if "retry-after" in response.headers:
        assert "Retry-After" in documented.get("headers", {}), f"undocumented header: {where}"
    return template, status


class Calls:
    """Requests to a real server, each answer checked against the description as it comes."""

    def __init__(self, server: Server, description: dict[str, Any]) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=30)
        self.description = description
        self.seen: dict[tuple[str, str], set[str]] = {}

    def __call__(self, method: str, path: str, expected: int, *, key: str | None = CLIENT_KEY,
                 **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        response = self.http.request(method, path, headers=headers, **kwargs)
        assert response.status_code == expected, (method, path, response.text[:300])
        template, status = conforms(self.description, response)
        self.seen.setdefault((method.lower(), template), set()).add(status)
        return response


def test_every_answer_of_a_real_server_is_documented(server, description, artifacts):
    call = Calls(server, description)
    d = "/v1/deployments"
    call("GET", "/healthz", 200, key=None)
    call("GET", "/readyz", 200, key=None)
    call("GET", "/metrics", 200, key=None)
    call("GET", d, 200)
    call("GET", d, 401, key=None)
    call("GET", d, 401, key="not-a-key-of-this-server")
    call("GET", d, 200, key=None, headers={"X-API-Key": CLIENT_KEY})  # the other scheme
    call("GET", d, 401, headers={"X-API-Key": CLIENT_KEY})  # both: refused, as documented
    # predict: one, a batch, and each mistake
    decision = call("POST", f"{d}/main/predict", 200, json={"features": ONE}).json()
    batch = call("POST", f"{d}/main/predict", 200,
                 json={"instances": [as_features(x) for x in X[1:6]]}).json()["decisions"]
    call("POST", f"{d}/main/predict", 400, content=b"{not json",
         headers={"content-type": "application/json"})
    call("POST", f"{d}/main/predict", 401, key=None, json={"features": ONE})
    call("POST", f"{d}/nope/predict", 404, json={"features": ONE})
    call("POST", f"{d}/main/predict", 413, json={"instances": [ONE] * 21})
    call("POST", f"{d}/main/predict", 415, content=b"x0=1", headers={"content-type": "text/plain"})
    call("POST", f"{d}/main/predict", 422, json={"features": {"x0": 1.0}})
    call("POST", f"{d}/broken/predict", 503, json={"features": ONE})
    # feedback: recorded, a list with a result per item, and each refusal
    call("POST", f"{d}/main/feedback", 200, json={"decision_id": decision["decision_id"],
                                                  "label": int(Y[0])})
    results = call("POST", f"{d}/main/feedback", 200, json=[
        {"decision_id": batch[0]["decision_id"], "label": int(Y[1])},
        {"decision_id": decision["decision_id"], "label": 1},
        {"decision_id": "no-such-decision", "label": 1},
        {"decision_id": batch[1]["decision_id"], "label": 7}]).json()["results"]
    assert [r["status"] for r in results] == ["recorded", "duplicate", "unknown", "invalid"]
    call("POST", f"{d}/main/feedback", 409, json={"decision_id": decision["decision_id"],
                                                  "label": 1})
    call("POST", f"{d}/main/feedback", 404, json={"decision_id": "nothing", "label": 1})
    call("POST", f"{d}/main/feedback", 422, json={"decision_id": batch[2]["decision_id"],
                                                  "label": 7})
    call("POST", f"{d}/main/feedback", 400, content=b"[", headers={
        "content-type": "application/json"})
    ids = [call("POST", f"{d}/brief/predict", 200, json={"features": ONE}).json()["decision_id"]
           for _ in range(30)]
    deadline = time.monotonic() + 60  # the 0.5 s feedback window runs out for a later one
    for decision_id in ids:
        answer = call.http.post(f"{d}/brief/feedback", json={"decision_id": decision_id,
                                                             "label": 1},
                                headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        conforms(description, answer)
        if answer.status_code == 410:
            call.seen[("post", "/v1/deployments/{name}/feedback")].add("410")
            break
        assert answer.status_code == 200 and time.monotonic() < deadline, answer.text
        time.sleep(0.1)
    else:
        raise AssertionError("no feedback expired")
    # reading
    call("GET", f"{d}/main", 200)
    call("GET", f"{d}/nope", 404)
    call("GET", f"{d}/main/events", 200, params={"since": 0, "limit": 10})
    call("GET", f"{d}/main/events", 422, params={"limit": 0})
    call("GET", f"{d}/nope/events", 404)
    call("GET", f"{d}/main/history", 200, params={"minutes": 5, "buckets": 10})
    call("GET", f"{d}/main/history", 422, params={"minutes": 1441})
    call("GET", f"{d}/nope/history", 404)
    call("GET", f"{d}/main", 200, params={"max_age": 2})
    # admin: each change and its refusals
    v = f"{d}/main/versions"
    call("POST", v, 403, json={"name": "v3", "artifact": "good2.skops"})
    assert call("POST", v, 201, key=ADMIN_KEY, json={"name": "v3", "artifact": "good2.skops",
                                                     "validation_score": 0.9}
                ).json() == {"name": "v3", "status": "dark"}
    call("POST", v, 409, key=ADMIN_KEY, json={"name": "v3", "artifact": "good2.skops"})
    call("POST", v, 422, key=ADMIN_KEY, json={"name": "v4", "artifact": "junk.skops"})
    call("POST", f"{d}/nope/versions", 404, key=ADMIN_KEY, json={"name": "v4",
                                                                 "artifact": "good.skops"})
    call("POST", f"{v}/v3/promote", 200, key=ADMIN_KEY, json={"reason": "looks fine"})
    call("POST", f"{v}/v3/promote", 409, key=ADMIN_KEY)
    call("POST", f"{v}/bad/rollback", 200, key=ADMIN_KEY)
    call("POST", f"{v}/bad/rollback", 409, key=ADMIN_KEY)
    call("POST", f"{v}/bad/rollback", 403)
    call("POST", f"{v}/nope/rollback", 404, key=ADMIN_KEY)
    call("POST", f"{v}/bad/reinstate", 200, key=ADMIN_KEY, json={"reason": "a second look"})
    call("POST", f"{v}/good/reinstate", 409, key=ADMIN_KEY)
    call("POST", f"{v}/good/reinstate", 422, key=ADMIN_KEY, json={"why": "unknown field"})
    call("DELETE", f"{v}/v3", 422, key=ADMIN_KEY, json={"reason": 7})
    call("DELETE", f"{v}/v3", 200, key=ADMIN_KEY, json={"reason": "replaced"})
    # upload: a model file in the request
    model = (artifacts / "good2.skops").read_bytes()
    uploaded = call("POST", f"{v}/upload", 201, key=ADMIN_KEY, data={"version": "v5"},
                    files={"artifact": ("model.skops", model)}).json()
    assert uploaded["sha256"] == hashlib.sha256(model).hexdigest()
    call("POST", f"{v}/upload", 403, data={"version": "v6"},
         files={"artifact": ("model.skops", model)})
    call("POST", f"{v}/upload", 415, key=ADMIN_KEY, json={"version": "v6"})
    call("POST", f"{v}/upload", 422, key=ADMIN_KEY, data={"version": "v6"},
         files={"artifact": ("model.exe", model)})
    call("POST", f"{v}/upload", 409, key=ADMIN_KEY, data={"version": "v5"},
         files={"artifact": ("model.skops", model)})
    call("DELETE", f"{v}/nope", 404, key=ADMIN_KEY)
    events = call("GET", f"{d}/main/events", 200).json()["events"]
    assert {e["kind"] for e in events} >= {"registered", "promoted", "rolled_back",
                                           "reinstated", "retired"}
    # the decision log as a file
    x = f"{d}/main/decisions/export"
    exported = call("GET", x, 200, key=ADMIN_KEY)
    frame = pd.read_parquet(io.BytesIO(exported.content))
    assert len(frame) == int(exported.headers["x-banditops-rows"]) >= 6
    assert exported.headers["x-banditops-truncated"] == "false"
    assert decision["decision_id"] in set(frame["decision_id"])
    csv = call("GET", x, 200, key=ADMIN_KEY, params={"format": "csv", "limit": 2})
    assert csv.text.count("\n") == 3 and csv.headers["x-banditops-truncated"] == "true"
    call("GET", x, 403)
    call("GET", f"{d}/nope/decisions/export", 404, key=ADMIN_KEY)
    call("GET", x, 422, key=ADMIN_KEY, params={"format": "xml"})
    call("GET", x, 422, key=ADMIN_KEY, params={"since": 20, "until": 10})
    call("GET", x, 422, key=ADMIN_KEY, params={"limit": 10**9})
    # every operation answered its success at least once, and most documented errors too
    operations = {(m, p): set(o["responses"]) for p, item in description["paths"].items()
                  for m, o in item.items()}
    for (method, path), documented in operations.items():
        success = {s for s in documented if s.startswith("2")}
        assert success <= call.seen.get((method, path), set()), (method, path, call.seen)
    covered = sum(len(statuses) for statuses in call.seen.values())
    assert covered >= 40, call.seen


def test_an_unreachable_database_is_documented_as_503_with_retry_after(tmp_path, artifacts):
    """The answers a real server gives only when its database fails, from the application
    in this process: readiness 503 with its problems, and 503 with Retry-After."""
    config = ServiceConfig.model_validate({
        "database": f"sqlite:///{tmp_path / 'db.sqlite'}", "artifact_dirs": [str(artifacts)],
        "db_timeout_seconds": 0.5, "api_keys": [{"key": CLIENT_KEY, "scope": "client"}],
        "deployments": {"main": {
            "features": {f: "number" for f in FEATURES},
            "versions": [{"name": "v1", "artifact": str(artifacts / "good.skops")}]}}})
    app = create_app(config)
    app.state.workers.startup()
    app.state.workers.start_threads()
    try:
        def down(*_, **__):
            raise StoreError("database unreachable: connection refused")

        log = app.state.deployments["main"].log
        log.record = log.record_one = log.lookup_many = down
        app.state.store.events = app.state.store.ping = down

        async def go():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test",
                                         headers={"Authorization": f"Bearer {CLIENT_KEY}"}
                                         ) as http:
                description = (await http.get("/openapi.json")).json()
                answers = [await http.get("/readyz"),
                           await http.post("/v1/deployments/main/predict",
                                           json={"features": ONE}),
                           await http.get("/v1/deployments/main/events")]
                return description, answers

        description, answers = asyncio.run(go())
    finally:
        app.state.workers.shutdown()
    assert [a.status_code for a in answers] == [503, 503, 503], [a.text for a in answers]
    assert answers[0].json()["problems"] == ["database unreachable"]
    assert all(a.headers.get("retry-after") == "1" for a in answers[1:])
    for answer in answers:
        conforms(description, answer)


def test_security_and_tags_follow_the_guards_access_map(tmp_path, artifacts):
    config = ServiceConfig.model_validate({
        "database": f"sqlite:///{tmp_path / 'db.sqlite'}", "artifact_dirs": [str(artifacts)],
        "api_keys": [{"key": CLIENT_KEY, "scope": "client"}],
        "deployments": {"main": {"features": {f: "number" for f in FEATURES},
                                 "versions": [{"name": "v1",
                                               "artifact": str(artifacts / "good.skops")}]}}})
    guard = create_app(config)
    description = guard.app.openapi()
    assert description["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "`Authorization: Bearer <key>`"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                   "description": "`X-API-Key: <key>` (instead of the bearer header)"}}
    tags = {tag["name"] for tag in description["tags"]}
    documented = {(m.upper(), p) for p, item in description["paths"].items() for m in item}
    routes = {(method, route.path) for route in guard.app.routes
              if getattr(route, "include_in_schema", False) for method in route.methods}
    assert documented == routes and len(routes) >= 13
    for path, item in description["paths"].items():
        for method, operation in item.items():
            scope = guard.access[(method.upper(), path)]  # every route is in the map
            where = f"{method} {path}"
            if scope is None:
                assert operation["security"] == [], where
                assert "**Key:**" not in operation["description"], where
            else:
                assert operation["security"] == [{"bearer": [scope]}, {"apiKey": [scope]}]
                assert f"**Key:** {scope} scope" in operation["description"], where
                assert "401" in operation["responses"], where
                assert ("403" in operation["responses"]) == (scope == "admin"), where
            assert operation["tags"] and set(operation["tags"]) <= tags, where
            assert operation["summary"] and operation["description"], where
            for status, answer in operation["responses"].items():
                assert answer["description"], (where, status)
                schema = next(iter(answer.get("content", {}).values()), {}).get("schema")
                assert schema, f"{where} {status}: no schema"
                if status[0] in "45" and path != "/readyz":  # readyz: NotReady
                    assert schema == {"$ref": "#/components/schemas/Error"}, (where, status)
    text = str(description).lower()
    for internal in ("fast lane", "fastapi", "guard", "worker", "event loop", "asgi"):
        assert not re.search(rf"\b{internal}\b", text), internal
    assert "HTTPValidationError" not in str(description)


def test_docs_assets_are_shipped_and_served_compressed(server):
    for page in ("/docs", "/redoc"):
        answer = httpx.get(server.url + page)
        assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
        assert "connect-src 'self'" in answer.headers["content-security-policy"]
        urls = re.findall(r'(?:src|href)="([^"]+)"', answer.text)
        assert urls and all(u.startswith("/static/") for u in urls), urls
        for url in urls:
            asset = httpx.get(server.url + url, headers={"accept-encoding": "gzip"})
            assert asset.status_code == 200 and asset.headers["etag"], url
            if url.endswith(".js"):
                assert asset.headers["content-encoding"] == "gzip"
                assert len(asset.content) > 100_000  # the real bundles


# ------------------------------------------------------------------ browser
def console_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors


def test_swagger_ui_offline_try_it_out_predict_with_a_key(server, page):
    aborted = forbid_network(page, allow=server.url)
    errors = console_errors(page)
    page.goto(f"{server.url}/docs")
    page.wait_for_selector("#operations-predictions-predict", timeout=30_000)
    assert "banditops API" in page.inner_text(".information-container")
    for tag in ("predictions", "deployments", "admin", "operations"):
        assert page.locator(f"#operations-tag-{tag}").count() == 1, tag

    page.click("button.authorize")
    bearer = page.locator(".modal-ux .auth-container").first  # the first scheme: bearer
    assert "bearer" in bearer.inner_text() and "X-API-Key" not in bearer.inner_text()
    bearer.locator("#auth-bearer-value").fill(CLIENT_KEY)
    bearer.locator("button.authorize").click()
    page.wait_for_selector(".modal-ux button.btn-done")
    assert "Authorized" in bearer.inner_text()
    page.click(".modal-ux button.btn-done")

    operation = page.locator("#operations-predictions-predict")
    operation.locator(".opblock-summary").first.click()
    operation.locator("button.try-out__btn").click()
    body = operation.locator("textarea.body-param__text")
    assert '"features"' in body.input_value()  # the example body, for this server's features
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=30_000)
    assert status.inner_text().strip() == "200", operation.inner_text()
    answer = operation.locator(".live-responses-table tbody .response-col_description").first
    assert re.search(r'"decision_id": "[0-9a-f]{32}"', answer.inner_text())
    assert "Bearer " + CLIENT_KEY in operation.inner_text()  # the curl line carries the key
    shot = screenshot(page, "api-docs-swagger-try-it-out.png")
    assert shot.stat().st_size > 10_000
    assert not aborted, aborted
    assert not errors, errors
    # persistAuthorization is off: the key is not kept in the browser's storage
    assert CLIENT_KEY not in page.evaluate("JSON.stringify(window.localStorage)")


def test_redoc_offline_renders_every_operation(server, page, description):
    aborted = forbid_network(page, allow=server.url)
    errors = console_errors(page)
    page.goto(f"{server.url}/redoc")
    page.wait_for_selector("[data-section-id^='operation/']", timeout=30_000)
    page.wait_for_load_state("networkidle")
    count = sum(len(item) for item in description["paths"].values())
    assert page.locator("[data-section-id^='operation/']").count() == count
    text = page.inner_text("body")
    for summary in ("Route a request to a model version", "Send the true label of a decision",
                    "Roll a version back", "Readiness"):
        assert summary in text, summary
    assert "X-API-Key" in text
    screenshot(page, "api-docs-redoc.png")
    assert not aborted, aborted
    # ReDoc's side menu always shows Redocly's logo from its CDN; the page's
    # Content-Security-Policy blocks it in the browser (the image hides itself)
    blocked = [e for e in errors if "cdn.redoc.ly/redoc/logo-mini.svg" in e
               and "Content Security Policy" in e and "blocked" in e]
    assert errors == blocked and len(blocked) <= 1, errors
