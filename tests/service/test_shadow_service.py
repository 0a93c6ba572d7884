"""Shadow scoring and dark launch in a real server process (issue 9, item 5).

A planted bad version registered on a dark-launch deployment is rolled back from its shadow
rewards without serving a request, a good one is promoted and then serves, and both states
survive a restart; shadow work behind a slow shadow model is dropped and counted instead of
slowing predict; and two replicas on one PostgreSQL learn each shadow reward exactly once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from banditops.client import Client, ServiceError
from tests.service.conftest import ADMIN_KEY, CLIENT_KEY, Server, headers, write_config
from tests.service.models import as_features, make_rows

X, Y = make_rows(3000, seed=31)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """``condition()``'s first truthy value, polled until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting until {what}"
        time.sleep(0.02)
    return value


def metric(server: Server, name: str, deployment: str) -> float:
    """A sample of /metrics, e.g. ``banditops_shadow_dropped_total`` of one deployment."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    found = re.search(rf'^{name}\{{deployment="{deployment}"\}} (\S+)$', text, re.MULTILINE)
    assert found, f"{name} of {deployment} is not in /metrics"
    return float(found.group(1))


def versions(client: Client, deployment: str) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in client.deployment(deployment)["versions"]}


# --------------------------------------------------------------------------- dark launch
DARK = """
[deployments.dark]
policy = "thompson"
policy_params = { seed = 1 }
features = FEATURES
release = { mode = "dark", min_samples = 50, check_every = 5 }
[[deployments.dark.versions]]
name = "v1"
artifact = "ARTIFACTS/good.skops"
"""


class Traffic:
    """Labelled requests in rounds: predict a batch, wait until its shadow predictions are
    attached (the shadow counter), then send the labels."""

    def __init__(self, server: Server, client: Client, deployment: str) -> None:
        self.server, self.client, self.deployment = server, client, deployment
        self.row = 0
        self.served: list[str] = []

    def round(self, size: int = 50) -> None:
        rows = range(self.row, self.row + size)
        self.row += size
        before = metric(self.server, "banditops_shadow_scored_total", self.deployment)
        decisions = self.client.predict_many(self.deployment, [as_features(X[i]) for i in rows])
        self.served += [d["version"] for d in decisions]
        wait_until(lambda: metric(self.server, "banditops_shadow_scored_total",
                                  self.deployment) >= before + size,
                   "the round's shadow predictions are attached")
        results = self.client.feedback_many(self.deployment, [
            (d["decision_id"], int(Y[i])) for d, i in zip(decisions, rows, strict=True)])
        assert {r["status"] for r in results} == {"recorded"}

    def until_decided(self, version: str, rounds: int = 20) -> str:
        """Rounds until ``version`` is no longer dark; its status then."""
        for _ in range(rounds):
            status = versions(self.client, self.deployment)[version]["status"]
            if status != "dark":
                return status
            self.round()
        raise AssertionError(f"{version} still dark after {rounds} rounds")


@pytest.fixture
def dark_server(tmp_path, artifacts):
    config = write_config(tmp_path, artifacts, DARK.replace("ARTIFACTS", str(artifacts)))
    server = Server(config).start()
    yield server
    server.stop()


def test_a_dark_release_is_judged_from_shadow_rewards_before_it_serves(dark_server, tmp_path):
    server = dark_server
    with Client(server.url, ADMIN_KEY) as admin:
        assert admin.register("dark", "bad", "bad.skops") == {"name": "bad", "status": "dark"}
        report = admin.deployment("dark")
        assert (report["shadow"], report["release"]) == ("evaluating", "dark")
        bad = versions(admin, "dark")["bad"]
        assert (bad["status"], bad["judgement"], bad["traffic_share"]) == (
            "dark", "evaluating", 0.0)
        traffic = Traffic(server, admin, "dark")

        # The planted bad version: rolled back from its shadow rewards, never served.
        assert traffic.until_decided("bad") == "rolled_back"
        assert set(traffic.served) == {"v1"}, "a dark version served a request"
        bad = versions(admin, "dark")["bad"]
        assert bad["decisions"] == 0 and bad["shadow_rewards"] >= 50
        assert bad["shadow_reward_mean"] < 0.2 and bad["judgement"] is None
        event = next(e for e in admin.events("dark") if e["kind"] == "rolled_back")
        assert event["version"] == "bad" and "dark release bad is worse than v1" in \
            event["reason"]
        assert event["evidence"]["versus"]["v1"]["cs_lower"] > 0.01

        # A good one (the same fitted model): promoted with its evidence, then serves.
        assert admin.register("dark", "good2", "good2.skops")["status"] == "dark"
        served_before = len(traffic.served)
        assert traffic.until_decided("good2") == "live"
        assert set(traffic.served[served_before:]) == {"v1"}
        promoted = next(e for e in admin.events("dark") if e["kind"] == "promoted")
        assert promoted["version"] == "good2" and promoted["evidence"]["carried"] >= 50
        after = [d["version"] for d in admin.predict_many(
            "dark", [as_features(x) for x in X[-300:]])]
        assert after.count("good2") > 0, "the promoted version never served"

        # Registered dark, and every state stays what it was across a restart.
        assert admin.register("dark", "pending", "good.skops")["status"] == "dark"
    server.stop()
    server.start()
    with Client(server.url, ADMIN_KEY) as admin:
        restored = versions(admin, "dark")
        assert {name: v["status"] for name, v in restored.items()} == {
            "v1": "live", "bad": "rolled_back", "good2": "live", "pending": "dark"}
        assert restored["pending"]["judgement"] == "evaluating"
        assert restored["good2"]["shadow_rewards"] >= 50  # from the snapshot or the log
        with pytest.raises(ServiceError) as live:
            admin.promote("dark", "v1")
        assert live.value.status == 409 and "only dark versions" in live.value.message
        with pytest.raises(ServiceError) as unknown:
            admin.promote("dark", "v9")
        assert unknown.value.status == 404
        assert admin.promote("dark", "pending", reason="looks fine") == {
            "name": "pending", "status": "live"}
        assert versions(admin, "dark")["pending"]["status"] == "live"
        assert ("promoted", "pending", "looks fine") in [
            (e["kind"], e["version"], e["reason"]) for e in admin.events("dark")]
    response = httpx.post(f"{server.url}/v1/deployments/dark/versions/pending/promote",
                          headers=headers(CLIENT_KEY))
    assert response.status_code == 403
    assert "kind=promoted" in server.log.read_text()


# ---------------------------------------------------------------- a full shadow queue
SLOW = """
[deployments.slow]
policy = "validation-champion"
features = FEATURES
guardrail = false
shadow = { mode = "all" }
[[deployments.slow.versions]]
name = "fast"
artifact = "ARTIFACTS/good.skops"
validation_score = 0.9
[[deployments.slow.versions]]
name = "slow"
artifact = "ARTIFACTS/slow.joblib"
validation_score = 0.5
"""


def test_shadow_work_is_dropped_and_counted_rather_than_slowing_predict(tmp_path, artifacts):
    """The shadow model takes 0.3 s a call and the queue holds 4 requests: each answer of
    10 instances queues at most 4 and drops the rest; predict waits at most for the one
    shadow micro-batch running when it arrives, never for the backlog."""
    config = write_config(tmp_path, artifacts, SLOW.replace("ARTIFACTS", str(artifacts)),
                          allow_pickle=True, extra="shadow_queue = 4\nmicro_batch = 4\n"
                                                    "model_timeout_ms = 20000")
    server = Server(config).start()
    try:
        latencies, requests = [], 10
        with Client(server.url, CLIENT_KEY) as client:
            started = time.monotonic()
            for r in range(requests):
                sent = time.monotonic()
                decisions = client.predict_many(
                    "slow", [as_features(x) for x in X[r * 10:(r + 1) * 10]])
                latencies.append(time.monotonic() - sent)
                assert {d["version"] for d in decisions} == {"fast"}
            elapsed = time.monotonic() - started
        dropped = metric(server, "banditops_shadow_dropped_total", "slow")
        assert dropped >= requests * 6, dropped  # at most 4 of each 10 found room
        # The shadow work offered (100 requests, 0.3 s per batch of 4) would take 7.5 s;
        # each predict waited for one running batch at most (0.3 s; bounds for a busy box).
        assert max(latencies) < 1.5, latencies
        assert elapsed < 7.5, (elapsed, latencies)
        # Every answered request is accounted for: dropped, or shadow-scored once its turn
        # came (nothing waits forever in the queue).
        wait_until(lambda: metric(server, "banditops_shadow_dropped_total", "slow")
                   + metric(server, "banditops_shadow_scored_total", "slow") == 100,
                   "every request's shadow work is scored or dropped")
        assert metric(server, "banditops_shadow_queued", "slow") == 0
        assert metric(server, "banditops_shadow_dropped_total", "slow") == dropped
    finally:
        server.stop()


# --------------------------------------------------------- two replicas, one PostgreSQL
PAIR = """
[deployments.pair]
policy = "thompson"
policy_params = { seed = 1 }
features = FEATURES
guardrail = false
shadow = { mode = "all" }
[[deployments.pair.versions]]
name = "good"
artifact = "ARTIFACTS/good.skops"
[[deployments.pair.versions]]
name = "bad"
artifact = "ARTIFACTS/bad.skops"
"""
LEARNED = ("learned", "learned_reward_sum", "shadow_rewards", "shadow_reward_mean")


def test_two_replicas_learn_each_shadow_reward_exactly_once(tmp_path, artifacts, postgres_url):
    config = write_config(tmp_path, artifacts, PAIR.replace("ARTIFACTS", str(artifacts)),
                          extra="sync_interval_seconds = 0.1")
    a = Server(config, db=postgres_url).start()
    b = Server(config, db=postgres_url).start()
    try:
        with Client(a.url, CLIENT_KEY) as on_a, Client(b.url, CLIENT_KEY) as on_b:
            decisions = on_a.predict_many("pair", [as_features(x) for x in X[:80]])
            wait_until(lambda: metric(a, "banditops_shadow_scored_total", "pair") == 80,
                       "replica A attached every decision's shadow prediction")
            labels = [(d["decision_id"], int(y)) for d, y in zip(decisions, Y[:80], strict=True)]
            assert {r["status"] for r in on_a.feedback_many("pair", labels[:40])} == {"recorded"}
            assert {r["status"] for r in on_b.feedback_many("pair", labels[40:])} == {"recorded"}
            served = [d["version"] for d in decisions]
            # Each labelled decision has one shadow: the version that did not serve it.
            expected = {"good": served.count("bad"), "bad": served.count("good")}

            def learned(client: Client) -> dict[str, tuple]:
                return {n: tuple(v[k] for k in LEARNED) for n, v in versions(client,
                                                                           "pair").items()}

            def caught_up(client: Client) -> dict[str, tuple] | None:
                now = learned(client)
                counts = {n: v[2] for n, v in now.items()}
                return now if counts == expected and sum(v[0] for v in now.values()) == 80 \
                    else None

            on_a_learned = wait_until(lambda: caught_up(on_a), "replica A learned all 80")
            on_b_learned = wait_until(lambda: caught_up(on_b), "replica B learned all 80")
            assert on_a_learned == on_b_learned
            assert on_b_learned["good"][3] > 0.9 > 0.1 > on_b_learned["bad"][3]
            assert metric(b, "banditops_shadow_scored_total", "pair") == 0  # A's shadows
            for _ in range(3):  # each report catches up again: nothing is learned twice
                assert learned(on_a) == learned(on_b) == on_b_learned
    finally:
        a.stop()
        b.stop()
