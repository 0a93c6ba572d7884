"""``GET /v1/deployments/{d}/history``: the dashboard's time series, from the SQL log.

Figures are checked against a hand computation from the logged rows: planted rows at known
times (bucket edges, Wilson and Student t intervals) through :class:`History`, and real traffic
through a real server; on SQLite and on PostgreSQL. Plus: one query for many concurrent
readers, keys and bounds.
"""

from __future__ import annotations

import asyncio
import math
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from scipy.stats import t as student
from sqlalchemy import create_engine, insert, select
from statsmodels.stats.proportion import proportion_confint

from banditops.client import Client
from banditops.errors import OverloadedError
from banditops.service.history import MAX_RUNNING, MAX_WAITING, History
from banditops.store.schema import decisions, feedback
from banditops.store.sql import Store
from tests.service.conftest import (
    ADMIN_KEY,
    CLIENT_KEY,
    Server,
    good_and_bad,
    headers,
    write_config,
)
from tests.service.models import as_features, make_rows


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    return request.getfixturevalue("postgres_url")


def plant(store: Store, deployment: str, rows: list[tuple[float, str, float | None, float]]
          ) -> None:
    """Decisions (made at, version) and their feedback (reward, arrived at) when not None."""
    with store.engine.begin() as connection:
        for made, version, reward, arrived in rows:
            ident = uuid.uuid4().hex
            connection.execute(insert(decisions).values(
                id=ident, deployment=deployment, version=version, prediction=1, propensity=0.5,
                created_at=made))
            if reward is not None:
                connection.execute(insert(feedback).values(
                    decision_id=ident, deployment=deployment, version=version, label=1,
                    reward=reward, created_at=arrived))


def run(coroutine):
    """``asyncio.run`` in a thread of its own: the session's Playwright browser may hold an
    event loop in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def t_interval(rewards: list[float]) -> tuple[float, float]:
    n = len(rewards)
    mean = sum(rewards) / n
    sd = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1))
    half = student.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return max(0.0, mean - half), min(1.0, mean + half)


def test_planted_rows_land_in_their_buckets_with_their_intervals(database):
    store = Store(database)
    store.migrate()
    # 10 buckets of 60 s ending at 6000 (the clock says 5990: the last bucket is partial)
    plant(store, "d", [
        (5399.9, "a", None, 0), (6000.0, "a", None, 0),  # outside the window
        (5400.0, "a", 1.0, 5460.0), (5459.9, "a", 0.0, 5461.0), (5460.0, "a", 1.0, 5520.0),
        (5470.0, "b", 0.5, 5520.0), (5471.0, "b", 1.0, 5530.0), (5472.0, "b", 0.25, 5579.9),
        (5999.0, "b", None, 0), (5990.0, "b", 1.0, 5400.0),  # feedback time counts
    ])
    plant(store, "other", [(5500.0, "a", 1.0, 5500.0)])  # another deployment's rows
    history = History(store, clock=lambda: 5990.0)
    answer = run(history.get("d", 10, 10))
    assert (answer["start"], answer["end"], answer["bucket_seconds"]) == (5400.0, 6000.0, 60.0)
    a, b = answer["versions"]
    assert (a["name"], b["name"]) == ("a", "b")
    assert a["decisions"] == [2, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert b["decisions"] == [0, 3, 0, 0, 0, 0, 0, 0, 0, 2]
    assert answer["decisions"] == [2, 4, 0, 0, 0, 0, 0, 0, 0, 2]
    assert a["traffic_share"][:2] == [1.0, 0.25] and a["traffic_share"][2] is None
    assert b["traffic_share"][9] == 1.0
    assert a["feedbacks"][:3] == [0, 2, 1] and a["reward_sum"][1:3] == [1.0, 1.0]
    assert b["feedbacks"] == [1, 0, 3, 0, 0, 0, 0, 0, 0, 0]
    assert answer["feedbacks"] == [1, 2, 4, 0, 0, 0, 0, 0, 0, 0]
    # 0/1 rewards: Wilson's score interval
    low, high = proportion_confint(1, 2, alpha=0.05, method="wilson")
    assert a["reward_mean"][1] == 0.5
    assert (a["ci_low"][1], a["ci_high"][1]) == pytest.approx((low, high), abs=1e-12)
    assert a["reward_mean"][0] is None and a["ci_low"][0] is None
    # other rewards: Student t, clipped to [0, 1]
    assert b["reward_mean"][2] == pytest.approx(1.75 / 3)
    assert (b["ci_low"][2], b["ci_high"][2]) == pytest.approx(t_interval([0.5, 1.0, 0.25]))
    low, high = proportion_confint(1, 1, alpha=0.05, method="wilson")
    assert (b["reward_mean"][0], b["ci_low"][0], b["ci_high"][0]) == pytest.approx(
        (1.0, low, high))
    store.close()


def test_concurrent_readers_share_one_query_and_a_stale_answer_is_recomputed(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    store.migrate()
    plant(store, "d", [(1000.0, "a", 1.0, 1000.0)])

    async def readers(history: History, n: int) -> list[dict]:
        return await asyncio.gather(*(history.get("d", 60, 60) for _ in range(n)))

    history = History(store, clock=lambda: 1010.0)
    answers = run(readers(history, 20))
    assert history.queries == 1 and all(a == answers[0] for a in answers)
    assert answers[0]["versions"][0]["decisions"][-1] == 1
    run(history.get("d", 60, 30))  # other parameters: their own answer
    assert history.queries == 2
    fresh = History(store, ttl=0.0, clock=lambda: 1010.0)  # expired at once
    run(fresh.get("d", 60, 60))
    plant(store, "d", [(1001.0, "a", None, 0)])
    again = run(fresh.get("d", 60, 60))
    assert fresh.queries == 2 and again["versions"][0]["decisions"][-1] == 2
    store.close()


def test_distinct_parameters_cannot_run_unbounded_queries(tmp_path):
    """Each (minutes, buckets) is its own answer, so a client cycling through them defeated
    the cache: 40 distinct 24 h requests ran 6 queries at once in the default executor (a
    1M-row table: the events route took 6 s meanwhile). Now: MAX_RUNNING at once in threads
    of their own, MAX_WAITING queued, the rest a 503 (OverloadedError), shared keys still
    shared."""
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    store.migrate()
    release = threading.Event()
    running, most, threads = [0], [0], set()
    lock = threading.Lock()

    class Blocking(History):
        def compute(self, deployment, minutes, buckets):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
                threads.add(threading.current_thread().name)
            release.wait(30)
            with lock:
                running[0] -= 1
            return super().compute(deployment, minutes, buckets)

    async def flood(history: History) -> list:
        asked = [asyncio.ensure_future(history.get("d", 1440, 300 - i)) for i in range(40)]
        repeat = asyncio.ensure_future(history.get("d", 1440, 300))  # in flight: shared
        await asyncio.sleep(0.2)
        while history.pending and not release.is_set():
            with lock:
                if running[0] == MAX_RUNNING:
                    break
            await asyncio.sleep(0.01)
        refused_early = sum(f.done() and isinstance(f.exception(), OverloadedError)
                            for f in asked)
        release.set()
        answers = await asyncio.gather(*asked, repeat, return_exceptions=True)
        return [refused_early, answers]

    history = Blocking(store, clock=lambda: 1010.0)
    refused_early, answers = run(flood(history))
    refused = [a for a in answers if isinstance(a, OverloadedError)]
    done = [a for a in answers if isinstance(a, dict)]
    assert len(done) == MAX_RUNNING + MAX_WAITING + 1  # the repeat shares buckets=300
    assert len(refused) == refused_early == 40 - MAX_RUNNING - MAX_WAITING
    assert "retry" in str(refused[0])
    assert most[0] == MAX_RUNNING and history.queries == MAX_RUNNING + MAX_WAITING
    assert all(name.startswith("history") for name in threads)  # not the default executor
    assert history.pending == 0
    assert isinstance(run(history.get("d", 1440, 1)), dict)  # room again afterwards
    store.close()


# ------------------------------------------------------------------ a real server
@pytest.fixture
def server(tmp_path, artifacts, database):
    config = write_config(tmp_path, artifacts, good_and_bad(artifacts, "epsilon-greedy"))
    running = Server(config, db=database).start()
    running.database = database
    yield running
    running.stop()


def by_hand(url: str, deployment: str, answer: dict) -> dict[str, dict[str, list]]:
    """Counts per version and bucket from the logged rows, bucketed here."""
    engine = create_engine(url)
    start, width, n = answer["start"], answer["bucket_seconds"], answer["buckets"]
    found: dict[str, dict[str, list]] = {}

    def slot(version: str) -> dict[str, list]:
        return found.setdefault(version, {"decisions": [0] * n, "feedbacks": [0] * n,
                                          "rewards": [[] for _ in range(n)]})

    with engine.connect() as connection:
        for made, version in connection.execute(select(
                decisions.c.created_at, decisions.c.version)
                .where(decisions.c.deployment == deployment)):
            if start <= made < answer["end"]:
                slot(version)["decisions"][int((made - start) // width)] += 1
        for arrived, version, reward in connection.execute(select(
                feedback.c.created_at, feedback.c.version, feedback.c.reward)
                .where(feedback.c.deployment == deployment)):
            if start <= arrived < answer["end"]:
                i = int((arrived - start) // width)
                slot(version)["feedbacks"][i] += 1
                slot(version)["rewards"][i].append(reward)
    engine.dispose()
    return found


def test_history_of_real_traffic_equals_the_logged_rows(server):
    x, y = make_rows(400, seed=21)
    with Client(server.url, CLIENT_KEY) as client:
        for start in range(0, 400, 40):
            answers = client.predict_many("main", [as_features(r) for r in x[start:start + 40]])
            labelled = [(a["decision_id"], int(y[start + i])) for i, a in enumerate(answers)
                        if i % 4]  # three in four get their label
            client.feedback_many("main", labelled)
    for minutes, buckets in ((5, 300), (60, 60)):
        answer = httpx.get(f"{server.url}/v1/deployments/main/history",
                           params={"minutes": minutes, "buckets": buckets},
                           headers=headers()).json()
        hand = by_hand(server.database, "main", answer)
        assert sorted(hand) == [v["name"] for v in answer["versions"]] == ["bad", "good"]
        assert sum(sum(v["decisions"]) for v in answer["versions"]) == 400
        assert sum(answer["feedbacks"]) == 300
        for series in answer["versions"]:
            mine = hand[series["name"]]
            assert series["decisions"] == mine["decisions"]
            assert series["feedbacks"] == mine["feedbacks"]
            for i, rewards in enumerate(mine["rewards"]):
                if not rewards:
                    assert series["reward_mean"][i] is None
                    continue
                wins = sum(rewards)
                low, high = proportion_confint(wins, len(rewards), alpha=0.05, method="wilson")
                assert series["reward_sum"][i] == pytest.approx(wins)
                assert series["reward_mean"][i] == pytest.approx(wins / len(rewards))
                assert (series["ci_low"][i], series["ci_high"][i]) == pytest.approx((low, high))
            total = [sum(hand[v]["decisions"][i] for v in hand) for i in range(buckets)]
            assert series["traffic_share"] == [d / n if n else None for d, n in zip(
                mine["decisions"], total, strict=True)]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_history_needs_a_key_and_bounded_parameters(server):
    url = f"{server.url}/v1/deployments/main/history"
    missing = httpx.get(url)
    assert missing.status_code == 401 and "missing API key" in missing.json()["detail"]
    assert httpx.get(url, headers=headers("wrong-key-0123456789")).status_code == 401
    for params in ({"minutes": 0}, {"minutes": 1441}, {"buckets": 0}, {"buckets": 361},
                   {"minutes": "hour"}, {"buckets": 2.5}):
        answer = httpx.get(url, params=params, headers=headers())
        assert answer.status_code == 422, (params, answer.text)
        assert next(iter(params)) in answer.json()["detail"]
    unknown = httpx.get(f"{server.url}/v1/deployments/nope/history", headers=headers())
    assert unknown.status_code == 404 and "unknown deployment" in unknown.json()["detail"]
    ok = httpx.get(url, params={"minutes": 1440, "buckets": 360}, headers=headers())
    assert ok.status_code == 200 and ok.json()["bucket_seconds"] == 240.0


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_shared_report_is_dropped_by_a_status_change(server):
    url = f"{server.url}/v1/deployments/main"

    def statuses() -> dict[str, str]:
        answer = httpx.get(url, params={"max_age": 10}, headers=headers())
        assert answer.status_code == 200, answer.text
        return {v["name"]: v["status"] for v in answer.json()["versions"]}

    assert statuses() == {"good": "live", "bad": "live"}
    rolled = httpx.post(f"{url}/versions/bad/rollback", json={"reason": "test"},
                        headers=headers(ADMIN_KEY))
    assert rolled.status_code == 200, rolled.text
    assert statuses() == {"good": "live", "bad": "rolled_back"}  # not the shared one
    assert httpx.get(url, params={"max_age": 11}, headers=headers()).status_code == 422
    events = httpx.get(f"{url}/events", headers=headers()).json()["events"]
    assert [(e["kind"], e["version"], e["reason"]) for e in events][-1] == (
        "rolled_back", "bad", "test")
