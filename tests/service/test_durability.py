"""kill -9 under load: nothing acknowledged is lost, and the restarted policy has learned
exactly the stored feedback. On SQLite (the default) and on PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from banditops.client import Client, ServiceError
from tests.service.conftest import CLIENT_KEY, Server, good_and_bad, write_config
from tests.service.models import as_features, make_rows

X, Y = make_rows(100_000, seed=9)
MIN_FED = 250  # acknowledged feedbacks before the kill
LOAD_TIMEOUT = 120.0


def load(url: str, acked: dict, fed: set, stop: threading.Event, worker: int) -> None:
    """Predict then give feedback, recording only what the server acknowledged."""
    with Client(url, CLIENT_KEY, timeout=5) as client:
        row = worker
        while not stop.is_set():
            try:
                decision = client.predict("main", as_features(X[row]))
                acked[decision["decision_id"]] = (decision["version"],
                                                  float(decision["prediction"] == Y[row]), row)
                client.feedback("main", decision["decision_id"], int(Y[row]))
                fed.add(decision["decision_id"])
            except ServiceError:
                return  # the server is gone
            row += 8


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_kill_9_loses_nothing_acknowledged(tmp_path, artifacts, database, request):
    db = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    # Snapshots every 50 rewards: the restart loads one and replays only what followed.
    config = write_config(tmp_path, artifacts, good_and_bad(artifacts, "thompson"),
                          extra="snapshot_every = 50")
    server = Server(config, db=db).start()
    acked: dict[str, tuple[str, float, int]] = {}
    fed: set[str] = set()
    stop = threading.Event()
    workers = [threading.Thread(target=load, args=(server.url, acked, fed, stop, i))
               for i in range(8)]
    for worker in workers:
        worker.start()
    # Kill once enough feedback is acknowledged, however slow the machine: a condition with
    # a generous bound, not a fixed sleep.
    deadline = time.monotonic() + LOAD_TIMEOUT
    while len(fed) < MIN_FED and time.monotonic() < deadline and any(
            worker.is_alive() for worker in workers):
        time.sleep(0.05)
    reached = len(fed)
    server.kill9()  # mid-load: requests are in flight
    stop.set()
    for worker in workers:
        worker.join()
    assert reached >= MIN_FED, f"only {reached} feedbacks in {LOAD_TIMEOUT:.0f} s"

    restarted = Server(config, db=db).start()
    try:
        with Client(restarted.url, CLIENT_KEY) as client:
            for decision_id, (_, _, row) in acked.items():
                try:
                    client.feedback("main", decision_id, int(Y[row]))
                    assert decision_id not in fed, "acknowledged feedback was lost"
                except ServiceError as error:
                    # 409: stored already. 404 would mean an acknowledged decision was lost.
                    assert error.status == 409, (decision_id, error)
            shown = client.deployment("main")
            report = {v["name"]: v for v in shown["versions"]}
    finally:
        restarted.stop()
    assert shown["restored_snapshot_feedback_seq"] > 0
    for name in ("good", "bad"):
        mine = [reward for version, reward, _ in acked.values() if version == name]
        stored = report[name]
        assert stored["feedbacks"] == len(mine)
        assert stored["decisions"] >= len(mine)
        assert (stored["reward_mean"] or 0.0) * stored["feedbacks"] == pytest.approx(sum(mine))
        # The restarted policy learned exactly what is stored, no more, no less.
        assert stored["learned"] == stored["feedbacks"]
        assert stored["learned_reward_sum"] == pytest.approx(sum(mine))
