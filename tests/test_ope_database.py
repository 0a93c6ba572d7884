"""``banditops evaluate --db``: the decision log read from the service's SQL tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from banditops.cli import app
from banditops.deployment import Deployment
from banditops.ope import evaluate, validate_log
from banditops.ope.database import log_from_database
from banditops.policies import Uniform
from banditops.store.sql import Store


class Constant:
    def __init__(self, value):
        self.value = value

    def predict(self, rows):
        return [self.value] * len(rows)


def served_log(url: str, *, context: bool = False):
    """200 decisions of a uniform deployment over three versions ("zero" always wrong on
    label 1), "two" rolled back after 100; every fifth decision left without feedback."""
    store = Store(url)
    store.migrate()
    clock = [0.0]
    deployment = Deployment(Uniform(seed=4), log=store.log("main", 3600.0),
                            clock=lambda: clock[0])
    deployment.subscribe(lambda e: store.add_event("main", e.time, e.kind, e.version,
                                                   e.reason, e.evidence))
    for name, score in (("zero", 0.4), ("one", 0.9), ("two", None)):  # the registry's rows
        store.add_version("main", name, f"{name}.skops", score, "0" * 64)
    deployment.register("zero", Constant(0), validation_score=0.4)
    deployment.register("one", Constant(1), validation_score=0.9)
    deployment.register("two", Constant(1))
    rewards = []
    for i in range(200):
        clock[0] = float(i)
        if i == 100:
            deployment.rollback("two", "a test")
        decision = deployment.predict([1.0, 2.0])
        if context:
            with store.engine.begin() as connection:
                connection.execute(text("UPDATE decisions SET context = :c WHERE id = :id"),
                                   {"c": json.dumps({"age": i % 50, "city": "x"}),
                                    "id": decision.id})
        if i % 5:
            clock[0] = i + 0.5
            rewards.append(deployment.feedback(decision.id, 1))
    store.engine.dispose()
    return rewards


def test_the_database_log_has_rewards_feedback_times_live_sets_and_scores(tmp_path):
    url = f"sqlite:///{tmp_path / 'service.db'}"
    rewards = served_log(url)
    frame = log_from_database(url, "main")
    log = validate_log(frame, "db")
    assert len(log) == 200 and int(log.frame["reward"].notna().sum()) == 160
    assert log.frame["reward"].mean() == pytest.approx(np.mean(rewards))
    assert (log.frame["feedback_time"].dropna() - log.frame["time"][
        log.frame["reward"].notna()] == 0.5).all()
    assert log.live_sets[0] == ("zero", "one", "two")
    assert log.live_sets[150] == ("zero", "one")  # rolled back at 100
    assert log.validation_scores() == {"zero": 0.4, "one": 0.9}
    assert log.features == []  # no context column: no features, no error
    # The policy that ran, evaluated on its own log, earns its observed mean.
    result = evaluate(log, "uniform")
    assert result.estimates[0].value == pytest.approx(np.mean(rewards))
    assert all(e.covers(np.mean(rewards)) for e in result.estimates)


def test_the_context_column_becomes_feature_columns(tmp_path):
    url = f"sqlite:///{tmp_path / 'service.db'}"
    served_log(url, context=True)
    log = validate_log(log_from_database(url, "main"))
    assert log.features == ["age", "city"]
    assert log.contexts()[7] == {"age": 7, "city": "x"}


def test_database_mistakes_are_one_error_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'service.db'}"
    served_log(url)
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--db", url, "--deployment", "other"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error: deployment 'other' has no decisions")
    assert "deployments with decisions: main" in result.output
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    create_engine(empty).connect().close()
    result = runner.invoke(app, ["evaluate", "--db", empty, "--deployment", "main"])
    assert result.exit_code == 2 and "not a banditops database" in result.output
    ok = runner.invoke(app, ["evaluate", "--db", url, "--deployment", "main", "--policy",
                             "latest", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["decisions"] == 200
