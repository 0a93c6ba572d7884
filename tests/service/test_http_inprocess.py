"""The application in this process (no server): a database that fails or stalls is a 503
with Retry-After, never a 500, and /healthz does not wait for it."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from banditops.errors import StoreError
from banditops.service.app import create_app
from banditops.service.config import ServiceConfig
from tests.service.conftest import CLIENT_KEY, headers
from tests.service.models import FEATURES, as_features, make_rows

X, _ = make_rows(5, seed=3)


@pytest.fixture
def app(tmp_path, artifacts):
    config = ServiceConfig.model_validate({
        "database": f"sqlite:///{tmp_path / 'db.sqlite'}", "artifact_dirs": [str(artifacts)],
        "db_timeout_seconds": 0.5,
        "api_keys": [{"key": CLIENT_KEY, "scope": "client"}],
        "deployments": {"main": {
            "features": {f: "number" for f in FEATURES}, "policy_params": {"seed": 0},
            "versions": [{"name": "v1", "artifact": str(artifacts / "good.skops")}]}}})
    application = create_app(config)
    application.state.workers.startup()
    application.state.workers.start_threads()
    yield application
    application.state.workers.shutdown()


def run(app, requests):
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await requests(http)
    return asyncio.run(go())


def test_a_failing_database_is_503_with_retry_after(app):
    store = app.state.store

    def down(*_, **__):
        raise StoreError("database unreachable: connection refused")

    store.add_decisions = down
    store.decisions_by_id = down
    store.events = down

    async def requests(http):
        return [await http.post("/v1/deployments/main/predict", headers=headers(),
                                json={"features": as_features(X[0])}),
                await http.post("/v1/deployments/main/feedback", headers=headers(),
                                json={"decision_id": "abc", "label": 1}),
                await http.get("/v1/deployments/main/events", headers=headers())]

    for response in run(app, requests):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert "database unreachable" in response.json()["detail"]


def test_healthz_does_not_wait_for_a_stalled_database(app):
    def stalled() -> bool:
        time.sleep(3)
        return True

    app.state.store.ping = stalled

    async def requests(http):
        ready = asyncio.create_task(http.get("/readyz"))
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        health = await http.get("/healthz")
        health_seconds = time.perf_counter() - started
        started = time.perf_counter()
        readiness = await ready
        return health, health_seconds, readiness, time.perf_counter() - started

    health, health_seconds, readiness, ready_seconds = run(app, requests)
    assert health.status_code == 200 and health_seconds < 0.1
    assert readiness.status_code == 503 and ready_seconds < 2.0  # db_timeout_seconds = 0.5
    assert readiness.json()["problems"] == ["database unreachable"]
