"""The decision logs and the feedback cursor: memory and SQL (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
import time

import pytest

from banditops import Deployment
from banditops.errors import (
    DuplicateFeedbackError,
    ExpiredDecisionError,
    StoreError,
    UnknownDecisionError,
)
from banditops.policies import EpsilonGreedy
from banditops.shadow import ShadowParams
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

    from sqlalchemy import text

    store = _store_at(database_url, "0002")
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


# ------------------------------------------------------------------ SQL shadows
def _shadowing(url: str, *, defer: bool, seed: int) -> tuple[Store, Deployment]:
    """A replica that shadow-scores every request: inline (``defer=False``) or afterwards."""
    store = Store(url)
    store.migrate()
    deployment = Deployment(EpsilonGreedy(epsilon=0.5, seed=seed), log=store.log("main", 3600.0),
                            shadow=ShadowParams(mode="all"), defer_shadows=defer)
    for name, value in (("zero", 0), ("one", 1), ("two", 2)):
        deployment.register(name, Constant(value))
    return store, deployment


def _shadow_rows(store: Store) -> list[tuple[str, str, object, float | None]]:
    from sqlalchemy import text

    with store.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(
            "SELECT decision_id, version, prediction, reward FROM shadows "
            "ORDER BY decision_id, version"))]


def _learned_shadows(deployment: Deployment) -> dict[str, tuple[int, float]]:
    return {r.name: (r.shadow_learned, r.shadow_reward_sum) for r in deployment.versions()}


def test_sql_log_shadow_rewards_are_learned_once_by_every_replica(database_url):
    """Shadows logged with the decision (replica A) or attached later (replica B), labels
    given to either replica: each replica learns every shadow reward exactly once."""
    (store_a, a), (store_b, b) = (_shadowing(database_url, defer=False, seed=1),
                                  _shadowing(database_url, defer=True, seed=2))
    rows = list(range(40))
    decisions = a.predict_batch([[i] for i in rows[:20]]) + [b.predict([i]) for i in rows[20:]]
    attached = b.shadow_later([(d.id, d.version, [i]) for d, i in
                               zip(decisions[20:35], rows[20:35], strict=True)])
    assert attached.attached == 15  # decisions 35..39 never get theirs
    rng = random.Random(0)
    expected: dict[str, list[float]] = {"zero": [], "one": [], "two": []}
    for index, decision in enumerate(decisions):
        label = rng.randint(0, 1)
        if index < 35:
            for name, value in (("zero", 0), ("one", 1), ("two", 2)):
                if name != decision.version:
                    expected[name].append(float(value == label))
        (a, b)[index % 2].feedback(decision.id, label)
    a.catch_up()
    b.catch_up()
    want = {name: (len(r), pytest.approx(sum(r))) for name, r in expected.items()}
    assert _learned_shadows(a) == want and _learned_shadows(b) == want
    assert sum(r.learned for r in a.versions()) == sum(r.learned for r in b.versions()) == 40
    stats_a, stats_b = a.policy.state()["stats"], b.policy.state()["stats"]
    stats_a.pop("cold_start")
    stats_b.pop("cold_start")
    assert stats_a == stats_b  # the same served and side observations on both replicas
    stored = _shadow_rows(store_a)
    assert len(stored) == 70 and all(reward is not None for *_, reward in stored)
    a.catch_up()
    b.catch_up()  # nothing new: nothing learned twice
    assert _learned_shadows(a) == want and _learned_shadows(b) == want
    for store in (store_a, store_b):
        store.close()


def test_sql_log_attaches_shadows_to_open_decisions_only(database_url):
    store = Store(database_url)
    store.migrate()
    log, other = store.log("main", 3600.0), store.log("other", 3600.0)
    now = time.time()
    log.record([LoggedDecision("a", "v1", 1, 0.5, now, None, (("v2", 0), ("v3", "x"))),
                LoggedDecision("b", "v1", 1, 0.5, now), LoggedDecision("c", "v1", 0, 0.5, now)])
    other.record([LoggedDecision("o", "v1", 1, 1.0, now)])
    assert log.close([Closing(log.lookup("c", now), 0, 1.0)], now) == [1]
    added = log.add_shadows({"b": (("v2", 1.5), ("v3", None)), "c": (("v2", 0),),
                             "o": (("v2", 1),), "zz": (("v2", 1),)})
    assert added == 1  # c is closed, o is another deployment's, zz is unknown
    assert log.add_shadows({"a": (("v2", 9),), "b": (("v2", 9),)}) == 0  # they keep theirs
    found = log.lookup_many(["a", "b"], now)
    assert found["a"].shadows == (("v2", 0), ("v3", "x"))
    assert found["b"].shadows == (("v2", 1.5), ("v3", None))
    assert [row[:2] for row in _shadow_rows(store)] == [
        ("a", "v2"), ("a", "v3"), ("b", "v2"), ("b", "v3")]
    store.close()


def test_shadows_attached_after_the_lookup_are_dropped_by_the_close(database_url):
    """The feedback looked the decision up before its shadows were attached: it cannot have
    scored them, so its close deletes them and no replica ever learns them."""
    (store_a, a), (store_b, b) = (_shadowing(database_url, defer=True, seed=1),
                                  _shadowing(database_url, defer=True, seed=2))
    decision = a.predict([1])
    looked_up = b.log.lookup(decision.id, time.time())
    assert looked_up.shadows == ()
    assert a.shadow_later([(decision.id, decision.version, [1])]).attached == 1
    assert len(_shadow_rows(store_a)) == 2
    reward = 1.0 if decision.prediction == 1 else 0.0
    assert b.log.close([Closing(looked_up, 1, reward)], time.time()) == [1]
    assert _shadow_rows(store_a) == []
    assert a.catch_up() == 1
    assert all(n == 0 for n, _ in _learned_shadows(a).values())
    assert a.shadow_later([(decision.id, decision.version, [1])]) == (0, 1)  # closed: late
    for store in (store_a, store_b):
        store.close()


def _until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def test_postgres_shadows_never_wait_for_a_feedback_being_stored(postgres_url):  # noqa: F811
    """A feedback insert in flight holds its decision's row: attaching skips it at once;
    once that feedback is gone (rolled back here), the decision takes its shadows."""
    import threading

    from sqlalchemy import text

    store, deployment = _shadowing(postgres_url, defer=True, seed=1)
    decision = deployment.predict([1])
    with store.engine.connect() as closing:
        transaction = closing.begin()
        closing.execute(text(
            "INSERT INTO feedback (decision_id, deployment, version, label, reward, "
            "created_at) VALUES (:id, 'main', :v, '1', 1.0, 0)"),
            {"id": decision.id, "v": decision.version})
        result: list[int] = []
        attach = threading.Thread(target=lambda: result.append(
            deployment.log.add_shadows({decision.id: (("x", 1),)})))
        attach.start()
        attach.join(10)
        assert not attach.is_alive() and result == [0]  # skipped, not waited for
        transaction.rollback()
    assert deployment.log.add_shadows({decision.id: (("x", 1),)}) == 1
    store.close()


def test_postgres_a_feedback_racing_an_attach_waits_then_drops_the_shadows(
        postgres_url):  # noqa: F811
    """The attach locked the decision (its first statement) after the feedback looked it up:
    the feedback's insert waits for the attach to commit, then its close deletes the
    shadows it could not score; nothing is learned from them, on either replica."""
    import threading

    from sqlalchemy import text

    (store_a, a), (store_b, b) = (_shadowing(postgres_url, defer=True, seed=1),
                                  _shadowing(postgres_url, defer=True, seed=2))
    decision = a.predict([1])
    with store_a.engine.connect() as attach:
        transaction = attach.begin()  # what add_shadows' first statement does
        attach.execute(text("SELECT id FROM decisions WHERE id = :id FOR UPDATE"),
                       {"id": decision.id})
        rewards: list[float] = []
        feedback = threading.Thread(target=lambda: rewards.append(b.feedback(decision.id, 1)))
        feedback.start()

        def feedback_waits() -> bool:
            with store_a.engine.connect() as probe:
                return bool(probe.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'INSERT INTO feedback%'")).scalar())

        _until(feedback_waits, "the feedback waits for the decision's row")
        others = [n for n in ("zero", "one", "two") if n != decision.version]
        inserted = attach.exec_driver_sql(a.log._attach_shadows, (  # its second statement
            "main", [decision.id] * 2, others, ["1", "2"])).scalars().all()
        assert inserted == [decision.id] * 2  # the feedback is not committed yet
        transaction.commit()
        feedback.join(30)
    assert rewards and not feedback.is_alive()
    assert _shadow_rows(store_a) == []
    a.catch_up()
    assert all(n == 0 for n, _ in _learned_shadows(a).values())
    assert all(n == 0 for n, _ in _learned_shadows(b).values())
    for store in (store_a, store_b):
        store.close()


def test_postgres_attaching_and_closing_concurrently_learns_each_stored_reward_once(
        postgres_url):  # noqa: F811
    """Replica A attaches shadows while replica B closes the same decisions, in batches, in
    two threads: every shadow row of a closed decision holds a reward, and B (which closed
    them) and a fresh replica C (which reads the log) learn exactly the stored rewards."""
    import threading

    (store_a, a), (store_b, b) = (_shadowing(postgres_url, defer=True, seed=1),
                                  _shadowing(postgres_url, defer=True, seed=2))
    decisions = a.predict_batch([[i % 2] for i in range(300)])
    labels = {d.id: i % 2 for i, d in enumerate(decisions)}
    predictions = {"zero": 0, "one": 1, "two": 2}
    order = list(decisions)
    random.Random(3).shuffle(order)
    errors: list[BaseException] = []

    def attach() -> None:
        try:
            for start in range(0, len(decisions), 10):
                a.log.add_shadows({d.id: tuple((n, p) for n, p in predictions.items()
                                               if n != d.version)
                                   for d in decisions[start:start + 10]})
        except BaseException as error:  # reported below
            errors.append(error)

    def close() -> None:
        try:
            for start in range(0, len(order), 7):
                results = b.feedback_many([(d.id, labels[d.id]) for d in order[start:start + 7]])
                assert all(isinstance(r, tuple) for r in results), results
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=attach), threading.Thread(target=close)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    stored = _shadow_rows(store_a)
    assert all(reward is not None for *_, reward in stored)
    per_version: dict[str, list[float]] = {}
    for _, version, _, reward in stored:
        per_version.setdefault(version, []).append(reward)
    want = {name: (len(per_version.get(name, [])), pytest.approx(sum(per_version.get(name, []))))
            for name in predictions}
    assert _learned_shadows(b) == want
    store_c, c = _shadowing(postgres_url, defer=True, seed=3)
    assert c.catch_up() == 300
    assert _learned_shadows(c) == want
    for store in (store_a, store_b, store_c):
        store.close()


def test_upgrading_a_database_of_revision_0003_adds_shadows(database_url):
    """Migration 0004 adds the shadow table; decisions logged before it take shadows, and
    their rewards reach every replica."""

    from sqlalchemy import text

    store = _store_at(database_url, "0003")
    with store.engine.begin() as connection:  # rows as revision 0003's service wrote them
        connection.execute(text(
            "INSERT INTO decisions (id, deployment, version, prediction, propensity, "
            "created_at) VALUES ('old', 'main', 'zero', '0', 1.0, :t)"), {"t": time.time()})
        connection.execute(text(
            "INSERT INTO version_totals (deployment, version, replica, decisions) "
            "VALUES ('main', 'zero', 'migrated', 1)"))
    store.close()
    (store_a, a), (store_b, b) = (_shadowing(database_url, defer=True, seed=1),
                                  _shadowing(database_url, defer=True, seed=2))
    assert a.shadow_later([("old", "zero", [1])]).attached == 1
    assert b.feedback("old", 1) == 0.0
    a.catch_up()
    assert _learned_shadows(a) == _learned_shadows(b) == {
        "zero": (0, 0.0), "one": (1, 1.0), "two": (1, 0.0)}
    assert a.versions()[0].decisions == 1 and a.versions()[0].feedbacks == 1
    store_a.migrate()  # at head already
    for store in (store_a, store_b):
        store.close()


def _store_at(database_url: str, revision: str) -> Store:
    """A store whose schema stands at an older Alembic ``revision`` (to test upgrades)."""
    from importlib import resources

    from alembic import command
    from alembic.config import Config

    store = Store(database_url)
    config = Config()
    config.set_main_option("script_location",
                           str(resources.files("banditops.store") / "migrations"))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return store


# ------------------------------------------------------------------ SQL contexts
def test_sql_log_keeps_contexts_for_lookup_and_for_other_replicas(database_url):
    """A decision's features come back with it on lookup (any replica) and with the feedback
    another replica stored (catch-up); a context that is not a mapping is not kept, odd
    values are made plain JSON, and decisions without one read as None."""
    import numpy as np

    store_a, store_b = Store(database_url), Store(database_url)
    store_a.migrate()
    log_a, log_b = store_a.log("main", 3600.0), store_b.log("main", 3600.0)
    now = time.time()
    features = {"age": 39, "income": 1234.5, "job": "clerk", "married": True, "note": None}
    odd = {"x": np.float32(0.5), "n": np.int64(3), "gap": float("nan"), 7: "seven"}
    log_a.record([
        LoggedDecision("plain", "v1", 1, 0.5, now, None, (), features),
        LoggedDecision("odd", "v2", 0, 0.25, now, None, (), odd),
        LoggedDecision("vector", "v1", 1, 0.5, now, None, (), np.ones(4)),
        LoggedDecision("none", "v2", 0, 0.5, now)])
    log_a.record_one(LoggedDecision("one", "v1", 1, 0.5, now, None, (), {"age": 1}))
    found = log_b.lookup_many(["plain", "odd", "vector", "none", "one"], now)
    assert found["plain"].context == features
    assert found["odd"].context == {"x": 0.5, "n": 3, "gap": None, "7": "seven"}
    assert found["vector"].context is None and found["none"].context is None
    assert found["one"].context == {"age": 1}
    log_b.catch_up()  # nothing yet: the cursor starts here
    assert log_a.close([Closing(found[i], 1, 1.0) for i in ("plain", "odd", "none")],
                       now) != [None, None, None]
    caught = log_b.catch_up()
    assert [(c.version, c.context) for c in caught] == [
        ("v1", features), ("v2", {"x": 0.5, "n": 3, "gap": None, "7": "seven"}), ("v2", None)]
    assert log_a.catch_up() == []  # its own feedback
    for store in (store_a, store_b):
        store.close()


def test_upgrading_a_database_of_revision_0006_adds_contexts(database_url):
    """Migration 0007 adds decisions.context: decisions logged before it read as None and
    still take their feedback; new ones keep their features."""
    from sqlalchemy import text

    store = _store_at(database_url, "0006")
    now = time.time()
    with store.engine.begin() as connection:  # rows as revision 0006's service wrote them
        for i in range(3):
            connection.execute(text(
                "INSERT INTO decisions (id, deployment, version, prediction, propensity, "
                "created_at, owner) VALUES (:id, 'main', 'zero', '0', 0.5, :t, NULL)"),
                {"id": f"old{i}", "t": now})
        connection.execute(text(
            "INSERT INTO version_totals (deployment, version, replica, decisions) "
            "VALUES ('main', 'zero', 'migrated', 3)"))
    store.migrate()
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM decisions WHERE context IS NULL")
                                  ).scalar_one() == 3
    log = store.log("main", 3600.0)
    old = log.lookup("old0", now)
    assert old.context is None and old.propensity == 0.5
    log.record_one(LoggedDecision("new", "zero", 0, 0.5, now, None, (), {"x": 1.5}))
    assert log.lookup("new", now).context == {"x": 1.5}
    assert log.close([Closing(old, 0, 1.0)], now)[0] is not None
    assert log.totals()["zero"].decisions == 4
    store.migrate()  # at head already
    store.close()
