"""A contextual policy in real servers (issue 12): it routes each request on its features,
learns from feedback whichever replica receives it (the decision's features come back from
the shared log: on lookup, and with the feedback another replica stored), and keeps what it
learned through a kill -9 and a restart, on PostgreSQL.

The two versions are each right on half of the requests (``RightWhere``: where x2 > 0, or
x2 < 0) and wrong on the other half, so both earn 0.5 on average: a context-free policy is
right on about half of the requests whatever it learns, a policy that routes on x2 on nearly
all of them.
"""

from __future__ import annotations

import httpx
import joblib
import numpy as np
import pytest

from tests.service.conftest import Server, headers, write_config
from tests.service.models import RightWhere, as_features, make_rows

DEPLOYMENT = """
[deployments.main]
policy = "linear-thompson"
policy_params = { seed = 3 }
features = FEATURES
labels = [0, 1]
guardrail = false
[[deployments.main.versions]]
name = "positive"
artifact = "ARTIFACTS/positive.joblib"
[[deployments.main.versions]]
name = "negative"
artifact = "ARTIFACTS/negative.joblib"
"""
RIGHT_SHARE = 0.75  # of fresh requests routed to the version right for them (chance: 0.5)


@pytest.fixture
def config(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    joblib.dump(RightWhere(1.0), models / "positive.joblib")
    joblib.dump(RightWhere(-1.0), models / "negative.joblib")
    return write_config(tmp_path, models, DEPLOYMENT.replace("ARTIFACTS", str(models)),
                        allow_pickle=True,
                        extra="sync_interval_seconds = 0.1\nsnapshot_every = 100")


def _client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, headers=headers())


def _predict(http: httpx.Client, x: np.ndarray) -> list[dict]:
    answer = http.post("/v1/deployments/main/predict",
                       json={"instances": [as_features(row) for row in x]})
    assert answer.status_code == 200, answer.text
    return answer.json()["decisions"]


def _right_share(http: httpx.Client, seed: int) -> float:
    """The share of 200 fresh requests (no feedback) sent to the version right for them."""
    x, _ = make_rows(200, seed=seed)
    served = [d["version"] for batch in range(0, 200, 20)
              for d in _predict(http, x[batch:batch + 20])]
    right = np.where(x[:, 2] > 0, "positive", "negative")
    return float(np.mean(np.array(served) == right))


def test_a_contextual_policy_learns_on_any_replica_and_through_a_restart(config, postgres_url):
    a = Server(config, db=postgres_url).start()
    b = None
    try:
        with _client(a) as http:
            report = http.get("/v1/deployments/main").json()
            assert report["policy"] == "linear-thompson" and report["contextual"] is True
            assert report["log_features"] is True
            before = _right_share(http, seed=100)
        b = Server(config, db=postgres_url).start()
        # A routes, B receives every label: B learns each on the features it looks up in the
        # log, A only through catching up on B's feedback (with the decisions' features)
        x, y = make_rows(600, seed=5)
        with _client(a) as to_a, _client(b) as to_b:
            for start in range(0, len(x), 20):
                decisions = _predict(to_a, x[start:start + 20])
                results = to_b.post("/v1/deployments/main/feedback", json=[
                    {"decision_id": d["decision_id"], "label": int(label)}
                    for d, label in zip(decisions, y[start:start + 20], strict=True)]).json()
                assert {r["status"] for r in results["results"]} == {"recorded"}, results
            learned_a = {v["name"]: v["learned"] for v in to_a.get(
                "/v1/deployments/main").json()["versions"]}  # a report syncs first
            assert sum(learned_a.values()) == 600, learned_a
            share_a, share_b = _right_share(to_a, seed=101), _right_share(to_b, seed=102)
        assert before < 0.65, before  # it had not learned yet
        assert share_a >= RIGHT_SHARE and share_b >= RIGHT_SHARE, (share_a, share_b)
        # kill -9: A restarts from the last snapshot either replica stored, and learns the
        # feedback after it from the log, with each decision's features
        a.kill9()
        a = Server(config, db=postgres_url, port=a.port).start()
        with _client(a) as http:
            report = http.get("/v1/deployments/main").json()
            assert report["restored_snapshot_feedback_seq"] is not None
            assert sum(v["learned"] for v in report["versions"]) == 600
            assert _right_share(http, seed=103) >= RIGHT_SHARE
    finally:
        a.stop()
        if b is not None:
            b.stop()


def test_a_bad_contextual_configuration_is_one_line_naming_the_field(tmp_path, config):
    """A contextual policy's parameters are checked before anything starts."""
    from typer.testing import CliRunner

    from banditops.cli import app

    text = config.read_text()
    for params, message in [
            ('{ features = ["x2", "x9"] }', "policy_params.features: ['x9'] are not features of "
                                            "this deployment"),
            ("{ dimension = 1 }", "dimension must be an integer in [2, 4096], got 1"),
            ("{ dimension = 1024 }", "policy_params.dimension: at most 256 in the service"),
            ("{ v = -1 }", "v must be")]:
        config.write_text(text.replace("policy_params = { seed = 3 }",
                                       f"policy_params = {params}"))
        result = CliRunner().invoke(app, ["serve", "--config", str(config), "--port", "18499"])
        said = " ".join(result.output.split())
        assert result.exit_code == 2 and "deployments.main" in said and message in said, said
