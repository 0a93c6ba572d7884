"""The decision logs and the feedback cursor: memory and SQL (SQLite and PostgreSQL)."""

from __future__ import annotations

import random

import pytest

from banditops import Deployment
from banditops.errors import (
    DuplicateFeedbackError,
    ExpiredDecisionError,
    StoreError,
    UnknownDecisionError,
)
from banditops.policies import EpsilonGreedy
from banditops.store.cursor import FeedbackCursor
from banditops.store.log import Closing, LoggedDecision
from banditops.store.memory import MemoryLog
from banditops.store.sql import Store
from tests.service.conftest import postgres_url  # noqa: F401 (fixture)


# ------------------------------------------------------------------ cursor
def test_cursor_learns_each_row_once_whatever_the_commit_order():
    """Rows become visible out of order, reads overlap, this replica writes some itself:
    every row is learned exactly once, by this replica or by a read."""
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 60)
        mine = {seq for seq in range(1, n + 1) if rng.random() < 0.3}
        visible_order = list(range(1, n + 1))
        rng.shuffle(visible_order)
        cursor = FeedbackCursor(gap_seconds=1e9)
        learned: list[int] = []
        visible: set[int] = set()
        for seq in visible_order:
            visible.add(seq)
            if seq in mine:
                cursor.wrote(seq)
                learned.append(seq)
            if rng.random() < 0.4:  # a read sees what is visible above the mark or in gaps
                wanted = set(cursor.wanted(0.0))
                rows = sorted(s for s in visible if s > cursor.high_water or s in wanted)
                learned += cursor.advance(rows, now=0.0)
        wanted = set(cursor.wanted(0.0))
        learned += cursor.advance(
            sorted(s for s in visible if s > cursor.high_water or s in wanted), now=0.0)
        assert sorted(learned) == list(range(1, n + 1))
        assert cursor.high_water == n and not cursor.gaps and not cursor.ahead


def test_cursor_gives_up_a_gap_after_its_time_and_survives_a_restart():
    cursor = FeedbackCursor(gap_seconds=30)
    assert cursor.advance([1, 3], now=0.0) == [1, 3]
    assert cursor.wanted(now=10.0) == [2]
    saved = cursor.state()
    restarted = FeedbackCursor(gap_seconds=30)
    restarted.load(saved, now=100.0)  # a restart gives gaps a fresh window
    assert restarted.wanted(now=120.0) == [2]
    assert restarted.advance([2], now=121.0) == [2]
    assert cursor.wanted(now=31.0) == []  # given up: a failed insert leaves a hole for good
    cursor.wrote(5)
    assert cursor.ahead == {5}
    assert cursor.advance([4, 5], now=32.0) == [4]  # 5 was learned when written


# ------------------------------------------------------------------ memory
def test_memory_log_totals_expiry_and_errors():
    log = MemoryLog(max_pending=2, ttl=10.0)
    log.record([LoggedDecision("a", "v1", 1, 0.5, 0.0), LoggedDecision("b", "v1", 0, 0.5, 1.0)])
    assert log.close([Closing(log.lookup("a", 2.0), 1, 1.0)], 2.0) == [0]
    with pytest.raises(DuplicateFeedbackError):
        log.lookup("a", 2.0)
    log.record([LoggedDecision("c", "v2", 1, 0.5, 2.0), LoggedDecision("d", "v2", 1, 0.5, 3.0)])
    with pytest.raises(ExpiredDecisionError):  # evicted: more than max_pending pending
        log.lookup("b", 3.0)
    with pytest.raises(ExpiredDecisionError):  # too old
        log.lookup("c", 12.5)
    with pytest.raises(UnknownDecisionError):
        log.lookup("zz", 3.0)
    totals = log.totals()
    assert (totals["v1"].decisions, totals["v1"].feedbacks, totals["v1"].expired) == (2, 1, 1)
    assert (totals["v2"].decisions, totals["v2"].expired) == (2, 1)


# --------------------------------------------------------------------- SQL
class Constant:
    def __init__(self, value):
        self.value = value

    def predict(self, rows):
        return [self.value] * len(rows)


def _replica(url: str) -> tuple[Store, Deployment]:
    store = Store(url)
    store.migrate()
    deployment = Deployment(EpsilonGreedy(epsilon=0.5, seed=1), log=store.log("main", 3600.0))
    deployment.register("zero", Constant(0))
    deployment.register("one", Constant(1))
    return store, deployment


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return request.getfixturevalue("postgres_url")


def test_sql_log_replicas_learn_every_reward_once_and_totals_are_exact(database_url):
    (store_a, a), (store_b, b) = _replica(database_url), _replica(database_url)
    decisions = a.predict_batch([[i] for i in range(60)]) + [b.predict([i]) for i in range(40)]
    rewards = {}
    for index, decision in enumerate(decisions):
        label = index % 2
        writer = (a, b)[index % 3 == 0]  # feedback reaches either replica
        rewards[decision.id] = writer.feedback(decision.id, label)
    with pytest.raises(DuplicateFeedbackError):
        b.feedback(decisions[0].id, 1)
    a.catch_up()
    b.catch_up()
    for replica in (a, b):
        reports = {r.name: r for r in replica.versions()}
        assert sum(r.decisions for r in reports.values()) == 100
        assert sum(r.feedbacks for r in reports.values()) == 100
        # Each replica learned every reward exactly once, its own and the other's.
        assert sum(r.learned for r in reports.values()) == 100
        assert sum(r.learned_reward_sum for r in reports.values()) == \
            pytest.approx(sum(rewards.values()))
    learned_a, learned_b = a.policy.state()["stats"], b.policy.state()["stats"]
    learned_a.pop("cold_start")  # decisions each replica made itself
    learned_b.pop("cold_start")
    assert learned_a == learned_b
    for store in (store_a, store_b):
        store.close()


def test_sql_log_refuses_unknown_expired_and_foreign_decisions(database_url):
    store, deployment = _replica(database_url)
    other = Deployment(EpsilonGreedy(seed=2), log=store.log("other", 3600.0))
    other.register("v", Constant(1))
    foreign = other.predict([0])
    with pytest.raises(UnknownDecisionError):  # another deployment's decision
        deployment.feedback(foreign.id, 1)
    clock = [1000.0]
    short = Deployment(EpsilonGreedy(seed=3), log=store.log("short", 10.0),
                       clock=lambda: clock[0])
    short.register("v", Constant(1))
    old, fresh = short.predict([0]), short.predict([0])
    clock[0] += 10.5
    with pytest.raises(ExpiredDecisionError, match="older than feedback_ttl_seconds=10"):
        short.feedback(old.id, 1)
    clock[0] -= 1.0
    assert short.feedback(fresh.id, 1) == 1.0
    store.close()


def test_a_sqlite_file_belongs_to_one_process_and_bad_urls_hide_passwords(tmp_path):
    first = Store(f"sqlite:///{tmp_path / 'one.db'}")
    first.lock()
    second = Store(f"sqlite:///{tmp_path / 'one.db'}")
    with pytest.raises(StoreError, match="in use by another banditops process"):
        second.lock()
    with pytest.raises(StoreError, match="cannot parse"):
        Store("::not a url::")
    refused = Store("postgresql+psycopg://user:hunter2secret@127.0.0.1:1/none",
                    timeout_seconds=1)
    with pytest.raises(StoreError) as caught:
        refused.migrate()
    assert "hunter2secret" not in str(caught.value) and "***" in str(caught.value)


def test_upgrading_a_database_of_revision_0002_keeps_its_totals(database_url):
    """Migration 0003 fills version_totals from what the older logs hold, once."""
    import time
    from importlib import resources

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    store = Store(database_url)
    config = Config()
    config.set_main_option("script_location",
                           str(resources.files("banditops.store") / "migrations"))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    now = time.time()
    with store.engine.begin() as connection:  # rows as revision 0002's service wrote them
        for i in range(10):
            connection.execute(text(
                "INSERT INTO decisions (id, deployment, version, prediction, propensity, "
                "created_at) VALUES (:id, 'main', :v, '1', 1.0, :t)"),
                {"id": f"d{i}", "v": "v1" if i < 7 else "v2", "t": now})
        for i in range(6):
            connection.execute(text(
                "INSERT INTO feedback (decision_id, deployment, version, label, reward, "
                "created_at) VALUES (:id, 'main', 'v1', '1', :r, :t)"),
                {"id": f"d{i}", "r": 0.5 if i % 2 else 1.0, "t": now})
    store.migrate()
    totals = store.log("main", 3600.0).totals()
    assert (totals["v1"].decisions, totals["v1"].feedbacks) == (7, 6)
    assert (totals["v1"].reward_sum, totals["v1"].reward_sq) == (4.5, 3.75)
    assert (totals["v2"].decisions, totals["v2"].feedbacks) == (3, 0)
    store.migrate()  # at head already: nothing counted twice
    assert store.log("main", 3600.0).totals()["v1"].decisions == 7
    store.close()
