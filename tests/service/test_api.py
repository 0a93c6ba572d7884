"""The API of a real server process: the happy path, keys and scopes, 20+ bad requests,
versions from artifacts, quarantine of broken models, guardrail rollback."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from banditops.client import Client, ServiceError
from tests.service.conftest import (
    ADMIN_KEY,
    CLIENT_KEY,
    Server,
    headers,
    write_config,
)
from tests.service.models import as_features, make_rows

DEPLOYMENTS = """
[deployments.main]
policy = "thompson"
policy_params = { seed = 1 }
features = FEATURES
guardrail = { min_samples = 50, check_every = 5 }  # the service defaults before 200 / 10
feedback_ttl_seconds = 3600
[[deployments.main.versions]]
name = "v1"
artifact = "ARTIFACTS/good.skops"
validation_score = 0.9
[[deployments.main.versions]]
name = "v2"
artifact = "ARTIFACTS/good2.skops"

[deployments.short]
policy = "epsilon-greedy"
features = FEATURES
guardrail = { min_samples = 50, check_every = 5 }  # the service defaults before 200 / 10
feedback_ttl_seconds = 0.5
[[deployments.short.versions]]
name = "v1"
artifact = "ARTIFACTS/good.skops"

[deployments.broken]
policy = "thompson"
policy_params = { seed = 2 }
features = FEATURES
guardrail = { min_samples = 50, check_every = 5 }  # the service defaults before 200 / 10
[[deployments.broken.versions]]
name = "good"
artifact = "ARTIFACTS/good.skops"
[[deployments.broken.versions]]
name = "raises"
artifact = "ARTIFACTS/exploding.joblib"
[[deployments.broken.versions]]
name = "slow"
artifact = "ARTIFACTS/slow.joblib"

[deployments.owned]
policy = "thompson"
features = FEATURES
labels = [0, 1]
feedback_same_key = true
[[deployments.owned.versions]]
name = "v1"
artifact = "ARTIFACTS/good.skops"

[deployments.guarded]
policy = "epsilon-greedy"
policy_params = { epsilon = 0.5, seed = 3 }
features = FEATURES
guardrail = { min_samples = 40, margin = 0.1, check_every = 5 }
[[deployments.guarded.versions]]
name = "good"
artifact = "ARTIFACTS/good.skops"
[[deployments.guarded.versions]]
name = "bad"
artifact = "ARTIFACTS/bad.skops"
"""
X, Y = make_rows(600, seed=5)
ONE = as_features(X[0])


@pytest.fixture(scope="module")
def server(tmp_path_factory, artifacts):
    folder = tmp_path_factory.mktemp("api")
    config = write_config(folder, artifacts, DEPLOYMENTS.replace("ARTIFACTS", str(artifacts)),
                          allow_pickle=True,
                          extra="max_batch = 10\nmax_body_bytes = 4096\nmodel_timeout_ms = 100")
    running = Server(config).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server):
    with Client(server.url, CLIENT_KEY) as c:
        yield c


def post(server, path, body=None, *, key=CLIENT_KEY, raw: str | None = None):
    kwargs = {"content": raw, "headers": {**headers(key), "content-type": "application/json"}} \
        if raw is not None else {"json": body, "headers": headers(key)}
    # A generous bound: a registration loads and checks the model in a child process, which
    # took over 10 s on 2 cores under CI's load.
    return httpx.post(f"{server.url}{path}", timeout=120, **kwargs)


def test_predict_feedback_and_report(server, client):
    decision = client.predict("main", ONE)
    assert set(decision) == {"decision_id", "version", "prediction", "propensity"}
    assert decision["version"] in ("v1", "v2") and 0 < decision["propensity"] <= 1
    assert decision["prediction"] == int(Y[0])
    assert client.feedback("main", decision["decision_id"], int(Y[0]))["reward"] == 1.0
    with pytest.raises(ServiceError) as duplicate:
        client.feedback("main", decision["decision_id"], int(Y[0]))
    assert duplicate.value.status == 409

    batch = client.predict_many("main", [as_features(x) for x in X[1:6]])
    assert [d["prediction"] for d in batch] == Y[1:6].tolist()
    results = client.feedback_many("main", [(d["decision_id"], int(y))
                                            for d, y in zip(batch, Y[1:6], strict=True)]
                                   + [("no-such-id", 1), (batch[0]["decision_id"], 1)])
    assert [r["status"] for r in results] == ["recorded"] * 5 + ["unknown", "duplicate"]

    report = client.deployment("main")
    versions = {v["name"]: v for v in report["versions"]}
    assert sum(v["decisions"] for v in versions.values()) == 6
    assert sum(v["feedbacks"] for v in versions.values()) == 6
    assert sum(v["learned"] for v in versions.values()) == 6
    assert sum(v["traffic_share"] for v in versions.values()) == pytest.approx(1.0)
    served = versions[decision["version"]]
    assert served["reward_mean"] == 1.0 and served["ci_low"] < 1.0
    listing = httpx.get(f"{server.url}/v1/deployments", headers=headers()).json()
    assert {d["name"] for d in listing["deployments"]} == {"main", "short", "broken", "guarded",
                                                           "owned"}


def test_labels_are_checked_and_feedback_can_require_the_key_that_predicted(server, client):
    decision = client.predict("owned", ONE)
    path = "/v1/deployments/owned/feedback"
    for wrong in ("1", True, 1.0, [1], ">50K"):
        answer = post(server, path, {"decision_id": decision["decision_id"], "label": wrong})
        assert answer.status_code == 422, (wrong, answer.text)
    # Another key (the admin's) may not give this decision's feedback: it is unknown to it.
    stolen = post(server, path, {"decision_id": decision["decision_id"], "label": 1},
                  key=ADMIN_KEY)
    assert stolen.status_code == 404
    # The wrong labels and the foreign key left the decision open for its own client.
    assert client.feedback("owned", decision["decision_id"], int(Y[0]))["reward"] == 1.0
    # Without feedback_same_key any key with the client scope may close a decision.
    other = client.predict("main", ONE)
    assert post(server, "/v1/deployments/main/feedback",
                {"decision_id": other["decision_id"], "label": int(Y[0])},
                key=ADMIN_KEY).status_code == 200


def test_feedback_after_the_ttl_is_gone(server, client):
    decision = client.predict("short", ONE)
    time.sleep(0.8)
    with pytest.raises(ServiceError) as expired:
        client.feedback("short", decision["decision_id"], 1)
    assert expired.value.status == 410 and "older than feedback_ttl_seconds" in str(expired.value)


def test_keys_and_scopes(server, artifacts):
    path = "/v1/deployments/main"
    assert httpx.get(server.url + path).status_code == 401
    assert httpx.get(server.url + path, headers=headers("wrong-key-0123456789")).status_code == 401
    assert httpx.get(server.url + path, headers={"X-API-Key": CLIENT_KEY}).status_code == 200
    admin_only = [
        ("POST", f"{path}/versions", {"name": "v9", "artifact": str(artifacts / "good.skops")}),
        ("POST", f"{path}/versions/v1/rollback", {"reason": "test"}),
        ("DELETE", f"{path}/versions/v1", None),
    ]
    for method, route, body in admin_only:
        response = httpx.request(method, server.url + route, json=body, headers=headers())
        assert response.status_code == 403, route
        assert "needs admin" in response.json()["detail"]
    assert post(server, f"{path}/predict", {"features": ONE}, key=ADMIN_KEY).status_code == 200
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}  # no key needed
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'banditops_http_requests_total{method="GET",route="/v1/deployments/{name}",' \
           'status="401"}' in metrics
    assert "banditops_http_request_seconds_bucket" in metrics
    assert 'banditops_decisions_total{deployment="main"' in metrics


def _sample(metrics: str, name: str, **labels: str) -> float | None:
    """A sample's value in a /metrics page, or None."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    for line in metrics.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_per_version_gauges_and_model_latency(server, client):
    for x, y in zip(X[:40], Y[:40], strict=True):
        decision = client.predict("main", as_features(x))
        client.feedback("main", decision["decision_id"], int(y))
    deadline, shares = time.monotonic() + 30, {}
    while time.monotonic() < deadline:  # gauges come from a report the worker computes
        metrics = httpx.get(f"{server.url}/metrics").text
        shares = {v: _sample(metrics, "banditops_traffic_share", deployment="main", version=v)
                  for v in ("v1", "v2")}
        if None not in shares.values():
            break
        time.sleep(0.2)
    versions = {v["name"]: v for v in client.deployment("main")["versions"]}
    for name, share in shares.items():
        assert share is not None and abs(share - versions[name]["traffic_share"]) < 0.2
        live = _sample(metrics, "banditops_version_live", deployment="main", version=name)
        assert live == float(versions[name]["status"] == "live")
        calls = _sample(metrics, "banditops_model_call_seconds_count", deployment="main",
                        version=name)
        assert calls is not None and calls >= 1
    assert abs(sum(shares.values()) - 1.0) < 1e-6
    means = [_sample(metrics, "banditops_reward_mean", deployment="main", version=v)
             for v in ("v1", "v2")]
    assert any(m is not None and 0.0 <= m <= 1.0 for m in means)


NAN = '{"features": {"x0": NaN, "x1": 0, "x2": 0, "x3": 0}}'
INF = '{"features": {"x0": Infinity, "x1": 0, "x2": 0, "x3": 0}}'
BAD_REQUESTS = [
    # (method, path, json body or raw text, key, status, message fragment)
    ("POST", "main/predict", "raw:{\"features\": {", CLIENT_KEY, 400, "malformed JSON"),
    ("POST", "main/predict", {"features": {"x0": 1, "x1": 1, "x2": 1}}, CLIENT_KEY, 422,
     "features: missing feature(s) ['x3']"),
    ("POST", "main/predict", {"features": {**ONE, "x9": 1}}, CLIENT_KEY, 422,
     "features: unknown feature(s) ['x9']"),
    ("POST", "main/predict", {"features": {**ONE, "x0": "1.5"}}, CLIENT_KEY, 422,
     "features.x0: expected a number, got '1.5'"),
    ("POST", "main/predict", {"features": {**ONE, "x1": True}}, CLIENT_KEY, 422,
     "features.x1: expected a number, got True"),
    ("POST", "main/predict", "raw:" + NAN, CLIENT_KEY, 400, "NaN is not a JSON number"),
    ("POST", "main/predict", "raw:" + INF, CLIENT_KEY, 400, "Infinity is not a JSON number"),
    ("POST", "main/predict", {"features": ONE, "instances": [ONE]}, CLIENT_KEY, 422,
     "send either 'features'"),
    ("POST", "main/predict", {}, CLIENT_KEY, 422, "send either 'features'"),
    ("POST", "main/predict", {"instances": []}, CLIENT_KEY, 422, "instances: the list is empty"),
    ("POST", "main/predict", {"instances": [ONE] * 11}, CLIENT_KEY, 413,
     "instances: 11 items; at most 10"),
    ("POST", "main/predict", {"instances": [ONE, 7]}, CLIENT_KEY, 422,
     "instances[1]: expected an object"),
    ("POST", "main/predict", {"instances": [ONE, {**ONE, "x2": None}]}, CLIENT_KEY, 422,
     "instances[1].x2: expected a number, got None"),
    ("POST", "main/predict", {"features": [1, 2, 3, 4]}, CLIENT_KEY, 422,
     "features: Input should be a valid dictionary"),
    ("POST", "main/predict", {"feature": ONE}, CLIENT_KEY, 422, "feature: Extra inputs"),
    ("POST", "nope/predict", {"features": ONE}, CLIENT_KEY, 404, "unknown deployment 'nope'"),
    ("POST", "main/feedback", {"decision_id": "abc"}, CLIENT_KEY, 422,
     "label: Field required"),
    ("POST", "main/feedback", {"decision_id": 12, "label": 1}, CLIENT_KEY, 422,
     "decision_id: Input should be a valid string"),
    ("POST", "main/feedback", {"decision_id": "never-issued", "label": 1}, CLIENT_KEY, 404,
     "unknown decision id 'never-issued'"),
    ("POST", "main/feedback", [{"decision_id": "a", "label": 1}] * 11, CLIENT_KEY, 413,
     "feedback: 11 items; at most 10"),
    ("POST", "main/feedback", [], CLIENT_KEY, 422, "feedback: the list is empty"),
    ("POST", "main/predict", {"instances": [{"x0": "y" * 5000}]}, CLIENT_KEY, 413,
     "request body over the 4,096-byte limit"),
    ("POST", "main/versions", {"name": "v3", "artifact": "/etc/passwd"}, ADMIN_KEY, 422,
     "outside the configured artifact_dirs"),
    ("POST", "main/versions", {"name": "v 3", "artifact": "good.skops"}, ADMIN_KEY, 422,
     "name: String should match pattern"),
    ("POST", "main/versions", {"name": "v1", "artifact": "good.skops"}, ADMIN_KEY, 409,
     "version 'v1' exists already"),
    ("POST", "main/versions", {"name": "v3", "artifact": "junk.skops"}, ADMIN_KEY, 422,
     "junk.skops is not a valid skops"),
    ("POST", "main/versions", {"name": "v3", "artifact": "missing.skops"}, ADMIN_KEY, 422,
     "not found"),
    ("POST", "main/versions", {"name": "v3", "artifact": "good.skops",
                               "validation_score": 1.5}, ADMIN_KEY, 422,
     "validation_score: Input should be less than or equal to 1"),
    ("POST", "main/versions/v7/rollback", {}, ADMIN_KEY, 404, "unknown version 'v7'"),
    ("POST", "short/versions/v1/rollback", {}, ADMIN_KEY, 409, "last live version"),
    ("GET", "main/events?limit=0", None, CLIENT_KEY, 422,
     "limit: Input should be greater than or equal to 1"),
    ("GET", "main/events?since=abc", None, CLIENT_KEY, 422, "since: Input should be a valid"),
]


@pytest.mark.parametrize(("method", "path", "body", "key", "status", "message"), BAD_REQUESTS,
                         ids=[f"{i}-{r[4]}" for i, r in enumerate(BAD_REQUESTS)])
def test_bad_requests_get_a_4xx_naming_the_problem(server, method, path, body, key, status,
                                                   message):
    url = f"{server.url}/v1/deployments/{path}"
    if isinstance(body, str) and body.startswith("raw:"):
        response = httpx.request(method, url, content=body[4:], timeout=60,
                                 headers={**headers(key), "content-type": "application/json"})
    else:  # a registration checks its artifact in a subprocess: seconds on a busy machine
        response = httpx.request(method, url, json=body, headers=headers(key), timeout=60)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_pickle_artifacts_need_the_opt_in(tmp_path, artifacts):
    config = write_config(tmp_path, artifacts, DEPLOYMENTS.split("[deployments.short]")[0]
                          .replace("ARTIFACTS", str(artifacts)))
    server = Server(config).start()
    try:
        response = post(server, "/v1/deployments/main/versions",
                        {"name": "v3", "artifact": "exploding.joblib"}, key=ADMIN_KEY)
        assert response.status_code == 422
        assert "set allow_pickle = true" in response.json()["detail"]
    finally:
        server.stop()


def test_admin_registers_skops_and_onnx_versions_and_retires(server, client):
    for name, artifact in (("v-onnx", "good.onnx"), ("v-skops", "good.skops")):
        response = post(server, "/v1/deployments/main/versions",
                        {"name": name, "artifact": artifact, "validation_score": 0.95},
                        key=ADMIN_KEY)
        assert response.status_code == 201, response.text
    served = {}
    for x, y in zip(X[:300], Y[:300], strict=True):
        decision = client.predict("main", as_features(x))
        served.setdefault(decision["version"], []).append(decision["prediction"] == y)
        client.feedback("main", decision["decision_id"], int(y))
    assert {"v-onnx", "v-skops"} <= set(served)
    assert np.mean(served["v-onnx"]) > 0.9  # the ONNX copy of the good model is as good
    response = httpx.delete(f"{server.url}/v1/deployments/main/versions/v-onnx",
                            headers=headers(ADMIN_KEY))
    assert response.status_code == 200
    response = post(server, "/v1/deployments/main/versions/v-skops/rollback",
                    {"reason": "bad canary"}, key=ADMIN_KEY)
    assert response.json() == {"name": "v-skops", "status": "rolled_back"}
    status = {v["name"]: v["status"] for v in client.deployment("main")["versions"]}
    assert status["v-onnx"] == "retired" and status["v-skops"] == "rolled_back"
    kinds = [(e["kind"], e["version"]) for e in client.events("main")]
    assert ("registered", "v-onnx") in kinds and ("retired", "v-onnx") in kinds
    assert ("rolled_back", "v-skops") in kinds
    assert all(client.predict("main", ONE)["version"] in ("v1", "v2") for _ in range(30))


def test_broken_models_are_quarantined_and_no_request_fails(server, client):
    answers = [client.predict("broken", as_features(x)) for x in X[:60]]
    assert all(a["version"] == "good" for a in answers[-20:])
    assert [a["prediction"] for a in answers] == Y[:60].tolist()
    status = {v["name"]: v["status"] for v in client.deployment("broken")["versions"]}
    assert status == {"good": "live", "raises": "quarantined", "slow": "quarantined"}
    reasons = {e["version"]: e["reason"] for e in client.events("broken")
               if e["kind"] == "quarantined"}
    assert "RuntimeError: segmentation of the feature store failed" in reasons["raises"]
    assert "over the 100 ms timeout" in reasons["slow"]


def test_the_guardrail_rolls_back_a_bad_version_through_the_api(server, client):
    for x, y in zip(X, Y, strict=True):
        decision = client.predict("guarded", as_features(x))
        client.feedback("guarded", decision["decision_id"], int(y))
    report = {v["name"]: v for v in client.deployment("guarded")["versions"]}
    assert report["bad"]["status"] == "rolled_back" and report["good"]["status"] == "live"
    assert report["bad"]["decisions"] < 150  # of 600
    rollback = next(e for e in client.events("guarded") if e["kind"] == "rolled_back")
    assert rollback["version"] == "bad" and rollback["evidence"]["mean"] < 0.3
    assert all(client.predict("guarded", ONE)["version"] == "good" for _ in range(20))
