"""Four server processes on one PostgreSQL take 8,000 feedbacks in parallel: exact totals,
each counted once, and every replica's policy learns every reward exactly once."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from banditops.client import Client, ServiceError
from tests.service.conftest import ADMIN_KEY, CLIENT_KEY, Server, good_and_bad, write_config
from tests.service.models import as_features, make_rows

N = 8000
DUPLICATES = 800


def test_four_replicas_keep_exact_totals(tmp_path, artifacts, postgres_url):
    # Idle connections kept for minutes: on two starved cores a client thread can pause past
    # the default 4-5 s, and a request sent as the server closes its idle connection is lost
    # in transit ("Server disconnected"), which says nothing about exact totals.
    config = write_config(tmp_path, artifacts, good_and_bad(artifacts, "epsilon-greedy"),
                          extra="keep_alive_seconds = 300.0\nbody_timeout_seconds = 300.0")
    servers = [Server(config, db=postgres_url).start(wait=False) for _ in range(4)]
    try:
        for server in servers:  # all four migrated the same database concurrently
            server.wait_ready()
        x, y = make_rows(N, seed=11)
        decisions = []
        with Client(servers[0].url, CLIENT_KEY) as client:
            for start in range(0, N, 100):
                decisions += client.predict_many(
                    "main", [as_features(row) for row in x[start:start + 100]])
        expected = {"good": [0, 0.0], "bad": [0, 0.0]}
        for decision, label in zip(decisions, y, strict=True):
            expected[decision["version"]][0] += 1
            expected[decision["version"]][1] += float(decision["prediction"] == label)

        # Every feedback once, spread over the replicas, plus 800 sent a second time to
        # another replica at the same time.
        jobs = [(i % 4, i) for i in range(N)] + [((i + 1) % 4, i) for i in range(DUPLICATES)]
        clients = [Client(server.url, CLIENT_KEY, timeout=30) for server in servers]

        failures: list[str] = []

        def send(job: tuple[int, int]) -> int:
            replica, i = job
            try:
                clients[replica].feedback("main", decisions[i]["decision_id"], int(y[i]))
                return 200
            except ServiceError as error:
                failures.append(error.message)
                return error.status

        with ThreadPoolExecutor(32) as pool:
            statuses = list(pool.map(send, jobs))
        assert statuses.count(200) == N and statuses.count(409) == DUPLICATES, \
            (Counter(statuses), [f for f in failures if "already" not in f][:5])

        # A version registered on one replica takes feedback on another at once.
        admin = httpx.post(f"{servers[0].url}/v1/deployments/main/versions",
                           json={"name": "v3", "artifact": "good2.skops"},
                           headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                           timeout=120)  # checked in a child process: slow on a busy machine
        assert admin.status_code == 201, admin.text
        new = next(d for d in (clients[0].predict("main", as_features(x[0]))
                               for _ in range(500)) if d["version"] == "v3")
        assert clients[1].feedback("main", new["decision_id"], int(y[0]))["status"] == \
            "recorded"
        expected["v3"] = [1, float(new["prediction"] == y[0])]

        for client in clients:  # every replica reports the same, exact totals
            report = {v["name"]: v for v in client.deployment("main")["versions"]}
            for name, (count, reward) in expected.items():
                assert report[name]["feedbacks"] == count
                assert report[name]["reward_mean"] * count == pytest.approx(reward)
                assert report[name]["learned"] == count  # learned once, not lost, not twice
                assert report[name]["learned_reward_sum"] == pytest.approx(reward)
            client.close()
    finally:
        for server in servers:
            server.stop()
