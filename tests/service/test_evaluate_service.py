"""Off-policy evaluation of a real server's traffic (issue 12): a decision log exported from a
running service, read by ``banditops evaluate``, estimates the policy that actually ran at
the mean reward it actually earned; and the export tells the truth about the run."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import httpx
import numpy as np
import pandas as pd

from tests.service.conftest import ADMIN_KEY, REPO, Server, headers, write_config
from tests.service.models import as_features, make_rows

EPSILON = 0.3
DEPLOYMENTS = f"""
[deployments.main]
policy = "epsilon-greedy"
policy_params = {{ epsilon = {EPSILON}, seed = 7 }}
features = FEATURES
labels = [0, 1]
guardrail = false
[[deployments.main.versions]]
name = "good"
artifact = "ARTIFACTS/good.skops"
[[deployments.main.versions]]
name = "bad"
artifact = "ARTIFACTS/bad.skops"

[deployments.other]
features = FEATURES
[[deployments.other.versions]]
name = "v1"
artifact = "ARTIFACTS/good.skops"
"""


def test_the_estimate_of_the_policy_that_ran_covers_its_observed_mean_reward(
        tmp_path, artifacts):
    """Epsilon-greedy (epsilon 0.3) serves 480 labelled requests, one at a time, with the
    labels sent back in batches of 20 (so the policy learns as it goes); the log exported
    through the admin route has every decision with the propensity and reward the client
    saw, and ``banditops evaluate`` of epsilon-greedy with the same parameters on it gives
    IPS and self-normalised IPS intervals that contain the mean reward the client observed
    (doubly robust ones within 0.02 of it: their reward model's term is not zero on-policy).
    Seen: observed 0.8396; IPS 0.8396 [0.807, 0.872], effective sample size 480."""
    config = write_config(tmp_path, artifacts,
                          DEPLOYMENTS.replace("ARTIFACTS", str(artifacts)))
    server = Server(config).start()
    x, y = make_rows(480, seed=21)
    answers, rewards = [], {}
    try:
        with httpx.Client(base_url=server.url, headers=headers(), timeout=30) as http:
            for start in range(0, len(x), 20):
                batch = []
                for i in range(start, start + 20):
                    answer = http.post("/v1/deployments/main/predict",
                                       json={"features": as_features(x[i])})
                    assert answer.status_code == 200, answer.text
                    answers.append(answer.json())
                    batch.append({"decision_id": answers[-1]["decision_id"],
                                  "label": int(y[i])})
                results = http.post("/v1/deployments/main/feedback", json=batch).json()
                for result in results["results"]:
                    assert result["status"] == "recorded", result
                    rewards[result["decision_id"]] = result["reward"]
            http.post("/v1/deployments/other/predict", json={"features": as_features(x[0])})
            exported = http.get("/v1/deployments/main/decisions/export",
                                headers=headers(ADMIN_KEY))
            other = http.get("/v1/deployments/other/decisions/export",
                             params={"format": "csv"}, headers=headers(ADMIN_KEY))
    finally:
        server.stop()
    assert exported.status_code == 200, exported.text
    assert exported.headers["x-banditops-rows"] == "480"
    assert exported.headers["content-disposition"] == (
        'attachment; filename="main-decisions.parquet"')
    assert len(pd.read_csv(io.StringIO(other.text))) == 1  # its own decision, none of main's
    log = pd.read_parquet(io.BytesIO(exported.content))
    path = tmp_path / "main.parquet"
    path.write_bytes(exported.content)

    # the export is the run: every decision once, in order, as the client saw it
    assert log["decision_id"].tolist() == [a["decision_id"] for a in answers]
    assert log["version"].tolist() == [a["version"] for a in answers]
    assert np.allclose(log["propensity"], [a["propensity"] for a in answers])
    assert np.allclose(log["reward"], [rewards[a["decision_id"]] for a in answers])
    assert (log["live"].map(json.loads) == log["live"].map(lambda _: ["good", "bad"])).all()
    assert (log["feedback_time"] > log["time"]).all()
    assert {f"feature:x{i}" for i in range(4)} <= set(log.columns)  # log_features by default
    assert np.allclose(log[[f"feature:x{i}" for i in range(4)]].to_numpy(), x)
    observed = float(np.mean(list(rewards.values())))
    served = log["version"].value_counts().to_dict()
    assert served["good"] > 2 * served["bad"] > 0, served  # it learned, and it explored

    evaluation = subprocess.run(
        [sys.executable, "-m", "banditops.cli", "evaluate", str(path), "--policy",
         "epsilon-greedy", "--param", f"epsilon={EPSILON}", "--json"],
        capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": f"{REPO / 'src'}:{REPO}", "PATH": "/usr/bin:/bin",
             "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
    assert evaluation.returncode == 0, evaluation.stderr[-2000:] + evaluation.stdout[-2000:]
    report = json.loads(evaluation.stdout)
    assert report["decisions"] == report["feedbacks"] == 480
    assert abs(report["logged_mean_reward"] - observed) < 1e-9
    estimates = {e["estimator"]: e for e in report["estimates"]}
    assert {"ips", "snips", "dr", "switch-dr"} <= set(estimates), estimates
    for name in ("ips", "snips"):  # unbiased: the interval holds what the run earned
        found = estimates[name]
        assert found["ci_low"] <= observed <= found["ci_high"], (name, observed, found)
        assert found["ci_high"] - found["ci_low"] < 0.1, (name, found)  # an informative one
        # the target walks the log as the service did: its chances are the logged ones
        assert abs(found["value"] - observed) < 0.005 and found["ess"] > 470, (name, found)
    for name in ("dr", "switch-dr"):  # the reward model's term moves them a little
        assert abs(estimates[name]["value"] - observed) < 0.02, (name, estimates[name])


def test_at_most_two_exports_stream_at_once(tmp_path):
    """A third export while two stream is a 503 (OverloadedError, with Retry-After); a slot
    is free again once an export has been read to its end."""
    import asyncio

    import pytest

    from banditops.errors import OverloadedError
    from banditops.service.exports import Exports
    from banditops.store.log import LoggedDecision
    from banditops.store.sql import Store

    store = Store(f"sqlite:///{tmp_path / 'log.db'}")
    store.migrate()
    store.log("main", 1e9).record([LoggedDecision(f"d{i}", "v1", 0, 1.0, 100.0 + i)
                                   for i in range(3)])
    exports = Exports(store)

    async def go() -> bytes:
        first = await exports.answer("main", "csv", None, None, 10)
        await exports.answer("main", "parquet", None, None, 10)
        with pytest.raises(OverloadedError, match="at most 2 at once"):
            await exports.answer("main", "csv", None, None, 10)
        body = b"".join([piece async for piece in first.body_iterator])
        third = await exports.answer("main", "csv", 101.0, None, 10)
        assert third.headers["x-banditops-rows"] == "2"
        return body

    body = asyncio.run(go())
    assert body.decode().splitlines()[1].startswith("d0,100.0,v1,1.0,,,")
    store.close()


def test_the_exported_live_versions_follow_the_servers_releases_and_take_downs(
        tmp_path, artifacts):
    """Registered from the file, registered dark through the API, promoted, rolled back,
    reinstated, retired: each decision's ``live`` list is what was live when it was made,
    from the events the server stored (dark versions serve nobody, so they are not live)."""
    config = write_config(tmp_path, artifacts, f"""
[deployments.main]
features = FEATURES
release = {{ mode = "dark" }}
guardrail = false
[[deployments.main.versions]]
name = "good"
artifact = "{artifacts}/good.skops"
[[deployments.main.versions]]
name = "bad"
artifact = "{artifacts}/bad.skops"
""")
    server = Server(config).start()
    x, _ = make_rows(5, seed=3)
    phases: list[tuple[list[str], list[str]]] = []  # (decision ids, live then)
    versions = "/v1/deployments/main/versions"
    steps = [(None, ["good", "bad"]),
             (("POST", versions, {"name": "v3", "artifact": "good2.skops"}), ["good", "bad"]),
             (("POST", f"{versions}/v3/promote", None), ["good", "bad", "v3"]),
             (("POST", f"{versions}/bad/rollback", None), ["good", "v3"]),
             (("POST", f"{versions}/bad/reinstate", None), ["good", "bad", "v3"]),
             (("DELETE", f"{versions}/good", None), ["bad", "v3"])]
    try:
        with httpx.Client(base_url=server.url, headers=headers(), timeout=30) as http:
            for change, live in steps:
                if change is not None:
                    method, path, body = change
                    answer = http.request(method, path, json=body, headers=headers(ADMIN_KEY))
                    assert answer.status_code in (200, 201), answer.text
                ids = [http.post("/v1/deployments/main/predict",
                                 json={"features": as_features(row)}).json()["decision_id"]
                       for row in x]
                phases.append((ids, live))
            exported = http.get("/v1/deployments/main/decisions/export",
                                params={"format": "csv"}, headers=headers(ADMIN_KEY))
    finally:
        server.stop()
    log = pd.read_csv(io.StringIO(exported.text)).set_index("decision_id")
    assert len(log) == 30
    for ids, live in phases:
        assert [json.loads(log.loc[i, "live"]) for i in ids] == [live] * len(ids), live
        assert set(log.loc[ids, "version"]) <= set(live)
