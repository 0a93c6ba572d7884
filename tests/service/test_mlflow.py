"""Versions from MLflow model URIs, against a tracking store this test creates (SQLite, no
MLflow server): models:/name/1 in a config file and through the API, models:/name@alias,
runs:/<run id>/model, the flavours banditops loads (onnx; sklearn saved with skops) and
refuses (pickle without allow_pickle), unknown models, and the error without the extra."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sklearn.linear_model import LogisticRegression

from banditops.client import Client
from tests.service.conftest import ADMIN_KEY, CLIENT_KEY, REPO, Server, headers, write_config
from tests.service.models import as_features, make_rows

X, Y = make_rows(300, seed=21)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory) -> dict[str, str]:
    """A tracking store with three registered models: churn-onnx (version 1), churn-skops
    (version 1, alias 'champion') and churn-pickle; and the run id and sha256 of each."""
    import mlflow
    from mlflow import MlflowClient
    from skl2onnx import to_onnx

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment("banditops", artifact_location=str(folder / "runs"))
    x, y = make_rows(2000)
    model = LogisticRegression().fit(x, y)
    found: dict[str, str] = {"uri": uri}
    logged = {
        "churn-onnx": lambda: mlflow.onnx.log_model(
            to_onnx(model, x[:1].astype("float32"), options={"zipmap": False}),
            name="model", registered_model_name="churn-onnx", pip_requirements=[]),
        "churn-skops": lambda: mlflow.sklearn.log_model(
            model, name="model", registered_model_name="churn-skops",
            serialization_format="skops", pip_requirements=[]),
        "churn-pickle": lambda: mlflow.sklearn.log_model(
            model, name="model", registered_model_name="churn-pickle",
            serialization_format="pickle", pip_requirements=[]),
    }
    for name, log in logged.items():
        with mlflow.start_run(experiment_id=experiment) as run:
            info = log()
        found[f"{name}-run"] = run.info.run_id
        model_file = next(Path(info.artifact_path).glob("model.*"))
        found[f"{name}-sha256"] = hashlib.sha256(model_file.read_bytes()).hexdigest()
    MlflowClient(uri).set_registered_model_alias("churn-skops", "champion", "1")
    return found


DEPLOYMENTS = """
[deployments.main]
policy = "thompson"
policy_params = { seed = 5 }
features = FEATURES
guardrail = false
[[deployments.main.versions]]
name = "from-mlflow"
artifact = "models:/churn-onnx/1"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, artifacts, tracking):
    folder = tmp_path_factory.mktemp("mlflow-server")
    config = write_config(folder, artifacts, DEPLOYMENTS,
                          extra=f'mlflow_tracking_uri = "{tracking["uri"]}"')
    running = Server(config).start()
    yield running
    running.stop()


def versions_serving(url: str, count: int = 100) -> dict[str, float]:
    """version -> accuracy of its answers over ``count`` requests."""
    right: dict[str, list[bool]] = {}
    with Client(url, CLIENT_KEY) as client:
        for x, y in zip(X[:count], Y[:count], strict=True):
            decision = client.predict("main", as_features(x))
            right.setdefault(decision["version"], []).append(decision["prediction"] == y)
    return {version: sum(r) / len(r) for version, r in right.items()}


def register(server, name: str, artifact: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/deployments/main/versions",
                      json={"name": name, "artifact": artifact},
                      headers=headers(ADMIN_KEY), timeout=120)


def test_a_config_file_version_from_mlflow_serves_traffic(server):
    served = versions_serving(server.url, 60)
    assert set(served) == {"from-mlflow"} and served["from-mlflow"] > 0.9


def test_registered_models_and_runs_through_the_api_serve_traffic(server, tracking):
    with Client(server.url, ADMIN_KEY, timeout=120) as admin:
        answer = register(server, "champion", "models:/churn-skops@champion")
        assert answer.status_code == 201, answer.text
        assert answer.json()["sha256"] == tracking["churn-skops-sha256"]
        answer = register(server, "by-run", f"runs:/{tracking['churn-onnx-run']}/model")
        assert answer.status_code == 201, answer.text
        assert answer.json()["sha256"] == tracking["churn-onnx-sha256"]
        admin.retire("main", "from-mlflow")
        served = versions_serving(server.url, 200)
        assert set(served) == {"champion", "by-run"}
        assert min(served.values()) > 0.9
        events = {e["version"]: e["evidence"] for e in admin.events("main")
                  if e["kind"] == "registered"}
    assert {k: events["champion"][k] for k in ("mlflow_model", "mlflow_version",
                                               "mlflow_run_id", "sha256", "source")} == {
        "mlflow_model": "churn-skops", "mlflow_version": "1",
        "mlflow_run_id": tracking["churn-skops-run"],
        "sha256": tracking["churn-skops-sha256"], "source": "models:/churn-skops@champion"}
    assert events["champion"]["mlflow_flavour"] == "sklearn (skops)"
    assert events["by-run"]["mlflow_run_id"] == tracking["churn-onnx-run"]
    assert events["by-run"]["mlflow_flavour"] == "onnx"


@pytest.mark.parametrize("artifact, message", [
    ("models:/no-such-model/1", "MLflow: Model Version (name=no-such-model, version=1) not found"),
    ("models:/churn-onnx/7", "not found"),
    ("models:/churn-skops@nobody", "nobody"),
    ("runs:/0123456789abcdef0123456789abcdef/model", "MLflow: Run"),
    ("runs:/0123/../../etc", "expected models:/<name>/<version>"),
    ("models:/churn-pickle/1", "set allow_pickle = true"),
])
def test_unknown_or_unsafe_models_are_a_422_naming_the_problem(server, artifact, message):
    response = register(server, "refused", artifact)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_a_restart_loads_mlflow_versions_from_the_database(tmp_path, artifacts, tracking):
    """The MLflow copy is pinned: the second start needs no tracking store at all."""
    config = write_config(tmp_path, artifacts, DEPLOYMENTS,
                          extra=f'mlflow_tracking_uri = "{tracking["uri"]}"')
    server = Server(config).start()
    server.stop()
    config.write_text(config.read_text().replace(tracking["uri"], "sqlite:////nonexistent/x.db"))
    server = Server(config).start()
    try:
        assert set(versions_serving(server.url, 20)) == {"from-mlflow"}
    finally:
        server.stop()


def test_mlflow_uris_without_the_extra_or_a_tracking_uri_say_what_is_missing(
        server, tmp_path, artifacts):
    code = ("import sys; sys.modules['mlflow'] = None\n"
            "from banditops.service.sources import _mlflow\n"
            "from banditops.errors import ArtifactError\n"
            "try:\n    _mlflow()\nexcept ArtifactError as error:\n    print(error)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO / "src")}, timeout=60, check=True)
    assert "pip install 'banditops[mlflow]'" in done.stdout
    config = write_config(tmp_path, artifacts, DEPLOYMENTS.split("[[deployments")[0] + f"""
[[deployments.main.versions]]
name = "v1"
artifact = "{artifacts}/good.skops"
""")
    plain = Server(config).start()
    try:
        response = register(plain, "m", "models:/churn-onnx/1")
        assert response.status_code == 422
        assert "mlflow_tracking_uri" in response.json()["detail"]
    finally:
        plain.stop()


def test_the_server_turns_mlflow_telemetry_off(monkeypatch):
    """MLflow would report usage to its makers' servers; banditops calls only the tracking
    store it is configured with."""
    from mlflow.environment_variables import MLFLOW_DISABLE_TELEMETRY

    from banditops.service.sources import _mlflow

    for variable in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
        monkeypatch.delenv(variable, raising=False)
    _mlflow()
    # MLflow's own switch (its other signals, such as running under pytest, do not count)
    assert MLFLOW_DISABLE_TELEMETRY.get() is True
