"""A real server serving a skl2onnx pipeline with named inputs (a string column, float and int64
columns) and nullable features: predictions equal scikit-learn's, nulls are taken where
declared and refused elsewhere, and versions that cannot take them are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest
import skops.io as sio

from banditops.client import Client
from banditops.service.docs import DeploymentState
from tests.service.conftest import ADMIN_KEY, CLIENT_KEY, REPO, Server, free_port, headers
from tests.service.models import mixed_onnx, mixed_pipeline, mixed_rows

FEATURES = '{ age = "number?", income = "number?", visits = "number", plan = "string?" }'
ONNX = "mixed.onnx"
CONFIG = """
database = "sqlite:///{db}"
artifact_dirs = ["{artifacts}"]

[[api_keys]]
key = "{client}"
scope = "client"

[[api_keys]]
key = "{admin}"
scope = "admin"

[deployments.mixed]
policy = "thompson"
policy_params = {{ seed = 4 }}
labels = ["no", "yes"]
guardrail = false
features = {features}
[[deployments.mixed.versions]]
name = "{name}"
artifact = "{artifacts}/{artifact}"
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The fitted pipeline, and its artifacts: mixed.onnx and mixed.skops (with imputers),
    bare.onnx and bare.skops (the same pipeline without imputers)."""
    folder = tmp_path_factory.mktemp("mixed-models")
    frame, labels = mixed_rows(2000, nulls=0.1)
    pipeline = mixed_pipeline().fit(frame, labels)
    (folder / "mixed.onnx").write_bytes(mixed_onnx(pipeline, frame))
    sio.dump(pipeline, folder / "mixed.skops")
    clean, clean_labels = mixed_rows(2000)
    bare = mixed_pipeline(impute=False).fit(clean, clean_labels)
    (folder / "bare.onnx").write_bytes(mixed_onnx(bare, clean))
    sio.dump(bare, folder / "bare.skops")
    return folder, pipeline


def write(folder, artifacts, features: str = FEATURES, artifact: str = ONNX,
          name: str = "onnx"):
    path = folder / "banditops.toml"
    path.write_text(CONFIG.format(db=folder / "service.db", artifacts=artifacts,
                                  client=CLIENT_KEY, admin=ADMIN_KEY, features=features,
                                  artifact=artifact, name=name))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, models):
    folder = tmp_path_factory.mktemp("mixed")
    running = Server(write(folder, models[0])).start()
    yield running
    running.stop()


def requests_and_expected(pipeline, n: int, seed: int):
    """Rows as a client sends them (null where a value is missing) and what the scikit-learn
    pipeline predicts for them (on NaN and "", the missing values it was trained with), keeping
    rows whose probability is not within 1e-3 of 0.5 (ONNX computes in float32)."""
    frame, _ = mixed_rows(n, seed=seed, nulls=0.25)
    margin = np.abs(pipeline.predict_proba(frame)[:, 1] - 0.5)
    frame = frame[margin > 1e-3]
    expected = pipeline.predict(frame).tolist()
    rows = []
    for record in frame.to_dict("records"):
        rows.append({
            "age": None if np.isnan(record["age"]) else record["age"],
            "income": None if np.isnan(record["income"]) else record["income"],
            "visits": int(record["visits"]),
            "plan": record["plan"] or None})
    return rows, expected


def test_the_onnx_pipeline_serves_what_scikit_learn_predicts_nulls_included(server, models):
    rows, expected = requests_and_expected(models[1], 240, seed=1)
    assert any(r["plan"] is None for r in rows) and any(r["age"] is None for r in rows)
    assert any(None not in r.values() for r in rows)  # a batch mixing nulls and values
    with Client(server.url, CLIENT_KEY) as client:
        decisions = client.predict_many("mixed", rows)
        assert [d["version"] for d in decisions] == ["onnx"] * len(rows)
        assert [d["prediction"] for d in decisions] == expected
        assert set(expected) == {"no", "yes"}  # string labels, both seen
        one = client.predict("mixed", {"age": None, "income": None, "visits": 3, "plan": None})
        assert one["prediction"] in ("no", "yes")
        report = client.deployment("mixed")
    assert report["features"] == {"age": "number?", "income": "number?", "visits": "number",
                                  "plan": "string?"}
    DeploymentState.model_validate(report)  # as the OpenAPI description says


def test_a_skops_copy_registered_beside_it_answers_the_same(server, models):
    response = httpx.post(f"{server.url}/v1/deployments/mixed/versions",
                          json={"name": "skops", "artifact": "mixed.skops"},
                          headers=headers(ADMIN_KEY), timeout=60)
    assert response.status_code == 201, response.text
    rows, expected = requests_and_expected(models[1], 240, seed=2)
    with Client(server.url, CLIENT_KEY) as client:
        decisions = client.predict_many("mixed", rows)
    assert {d["version"] for d in decisions} == {"onnx", "skops"}
    assert [d["prediction"] for d in decisions] == expected


@pytest.mark.parametrize(("artifact", "message"), [
    ("bare.skops", "feature age is nullable ('number?') but the model fails on a null age: "
                   "the model raised ValueError: Input X contains NaN"),
    ("bare.onnx", "feature age is nullable ('number?') but the model fails on a null age: "
                  "its output(s) ['probabilities'] hold NaN"),
])
def test_a_version_without_an_imputer_is_refused_at_registration(server, artifact, message):
    response = httpx.post(f"{server.url}/v1/deployments/mixed/versions",
                          json={"name": "bare", "artifact": artifact},
                          headers=headers(ADMIN_KEY), timeout=60)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    versions = httpx.get(f"{server.url}/v1/deployments/mixed", headers=headers(),
                         timeout=10).json()["versions"]
    assert "bare" not in {v["name"] for v in versions}


@pytest.mark.parametrize(("features", "message"), [
    ({"visits": None}, "features.visits: expected a number, got None (the feature is not "
                       "nullable)"),
    ({"visits": 2.5}, "features.visits: a version takes it as a whole number from "
                      "-9223372036854775808 to 9223372036854775807, got 2.5"),
    ({"visits": 1e30}, "features.visits: a version takes it as a whole number from"),
    ({"visits": 9.3e18}, "features.visits: a version takes it as a whole number from"),
    ({"plan": 3}, "features.plan: expected a string, got 3"),
    ({"age": "old"}, "features.age: expected a number, got 'old'"),
    # finite, but past float32: the ONNX input (and tree models) would take it as inf
    ({"age": 1e39}, "features.age: must be a finite number within float32 range "
                    "(|x| <= 3.4e+38: tree and ONNX models compute in float32), got 1e+39"),
    # valid JSON ("\\ud800") but no UTF-8 for it: onnxruntime raised, a 503 "every live
    # version failed on this input"
    ({"plan": "a\ud800"}, "features.plan: not valid Unicode (a lone surrogate, U+D800)"),
])
def test_nulls_and_wrong_values_where_not_declared_are_a_422(server, features, message):
    body = {"features": {"age": 30.0, "income": 2.0, "visits": 1, "plan": "pro", **features}}
    for _ in range(2):  # the fast path and the same again (nothing learned from the refusal)
        response = httpx.post(f"{server.url}/v1/deployments/mixed/predict",
                              content=json.dumps(body).encode(),  # ASCII: \\ud800 escaped
                              headers={**headers(), "Content-Type": "application/json"},
                              timeout=10)
        assert response.status_code == 422, response.text
        assert message in response.json()["detail"]
    versions = httpx.get(f"{server.url}/v1/deployments/mixed", headers=headers(),
                         timeout=10).json()["versions"]
    assert all(v["status"] == "live" for v in versions)


@pytest.mark.parametrize(("features", "artifact", "message"), [
    ('{ age = "number?", income = "number?", visits = "number", plan = "number?" }', ONNX,
     "the ONNX model's input 'plan' takes strings (tensor(string)) but the deployment declares "
     "feature plan as a number"),
    ('{ age = "number?", income = "number?", visits = "number" }', ONNX,
     "the ONNX model needs input(s) ['plan'] that the deployment does not declare"),
    ('{ age = "number?", income = "number?", visits = "number?", plan = "string?" }', ONNX,
     "feature visits is nullable but the ONNX model's input 'visits' is a tensor(int64)"),
    ('{ age = "number", income = "number?", visits = "number", plan = "string?" }',
     "bare.skops", "feature income is nullable ('number?') but the model fails on a null "
                   "income: the model raised ValueError: Input X contains NaN"),
])
def test_a_version_that_does_not_fit_the_declarations_stops_the_start(
        tmp_path, models, features, artifact, message):
    config = write(tmp_path, models[0], features, artifact, "first")
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    done = subprocess.run([sys.executable, "-m", "banditops.cli", "serve", "--config",
                           str(config), "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    output = " ".join((done.stdout + done.stderr).split())  # rich wraps long lines
    assert f"deployment mixed, version first: {message}" in output, output
