"""The decision log exported as a file (banditops.store.export): rows, columns, the versions
live at each decision, chunking, ranges and limits, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pytest

from banditops.errors import InvalidParameterError
from banditops.ope.logfile import read_log
from banditops.store.export import (
    export_bytes,
    export_log,
    format_of,
    live_timeline,
    plan_export,
)
from banditops.store.log import Closing, LoggedDecision
from banditops.store.sql import Store
from tests.service.conftest import postgres_url  # noqa: F401 (fixture)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'log.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    store = Store(url)
    store.migrate()
    yield store
    store.close()


def _read(data: bytes, fmt: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data)) if fmt == "parquet" else pd.read_csv(
        io.BytesIO(data), dtype={"decision_id": str, "version": str})


def _register(store: Store, name: str, when: float, *, dark: bool = False,
              score: float | None = None) -> None:
    """A version row and its "registered" event at ``when`` (as the service writes them)."""
    store.add_version("main", name, f"/models/{name}.skops", score, "0" * 64,
                      status="dark" if dark else "live")
    store.add_event("main", when, "registered", name, "from the config file",
                    {"status": "dark" if dark else "live"})


def test_the_live_versions_follow_every_status_change(store):
    """Registered live or dark, rolled back, promoted, reinstated, quarantined, retired: a
    decision's live list is the state after the events up to its time, in registration
    order, always with the version that served it."""
    _register(store, "v1", 100.0)
    _register(store, "v2", 100.0)
    store.add_version("main", "v3", "/models/v3.skops", None, "0" * 64, status="dark")
    store.add_event("main", 110.0, "registered", "v3", "registered dark",
                    {"validation_score": None, "dark": True})  # as Deployment.register says
    for when, kind, version in [(120.0, "rolled_back", "v1"), (130.0, "promoted", "v3"),
                                (140.0, "reinstated", "v1"), (150.0, "quarantined", "v2"),
                                (160.0, "retired", "v1"), (160.0, "policy", "v3")]:
        store.add_event("main", when, kind, version, "why", {})
    store.add_version("other", "x", "/models/x.skops", None, "0" * 64)  # not this deployment
    timeline = live_timeline(store, "main")
    expected = {99.0: [], 100.0: ["v1", "v2"], 115.0: ["v1", "v2"], 125.0: ["v2"],
                130.0: ["v2", "v3"], 145.0: ["v1", "v2", "v3"], 155.0: ["v1", "v3"],
                170.0: ["v3"]}
    for when, live in expected.items():
        assert json.loads(timeline.at(when, live[0] if live else "v1")) == (live or ["v1"])
    # a decision a replica served just before its clock's rollback event reached the table
    assert json.loads(timeline.at(125.0, "v1")) == ["v1", "v2"]


def test_a_version_without_a_registered_event_is_live_from_its_row(store):
    """A database older than registration events: the version row's creation time."""
    store.add_version("main", "old", "/models/old.skops", None, "0" * 64)
    _register(store, "new", 10.0**10)
    timeline = live_timeline(store, "main")
    assert json.loads(timeline.at(10.0**10 - 1, "old")) == ["old"]
    assert json.loads(timeline.at(10.0**10 + 1, "old")) == ["old", "new"]


def _log_decisions(store: Store) -> None:
    """12 decisions of 'main' (4 of each timestamp: batches share one), with features,
    feedback on the even ones, shadow rewards on some; 3 of another deployment."""
    _register(store, "v1", 0.0, score=0.75)
    _register(store, "v2", 0.0, score=0.5)
    log = store.log("main", 10.0**12)
    batch = []
    for i in range(12):
        context = {"age": i, "job": "clerk" if i % 3 else None, "vip": i % 2 == 0}
        shadows = (("v1" if i % 2 else "v2", i % 2),) if i < 6 else ()
        batch.append(LoggedDecision(f"d{i:02d}", "v2" if i % 2 else "v1", i % 2,
                                    0.25 + i / 100, 1000.0 + i // 4, None, shadows,
                                    context))
    log.record(batch)
    log.record([LoggedDecision("nocontext", "v1", 0, 0.5, 2000.0)])
    found = log.lookup_many([f"d{i:02d}" for i in range(0, 12, 2)], 1000.0)
    log.close([Closing(d, 0, 1.0 - int(d.id[1:]) / 100,
                       tuple((name, 0.5) for name, _ in d.shadows))
               for d in found.values()], 1000.0)
    store.log("other", 10.0**12).record([
        LoggedDecision(f"o{i}", "x", 0, 1.0, 1000.0, None, (), {"secret": i})
        for i in range(3)])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_export_holds_every_decision_once_with_its_columns(store, fmt, tmp_path):
    _log_decisions(store)
    plan = plan_export(store, "main")
    assert (plan.rows, plan.truncated) == (13, False)
    assert plan.features == {"age": "number", "job": "string", "vip": "boolean"}
    assert plan.shadow_versions == ("v2",)  # v1's shadow predictions have no reward yet
    frame = _read(b"".join(export_bytes(store, plan, fmt, chunk_rows=3)), fmt)
    assert list(frame.columns) == ["decision_id", "time", "version", "propensity", "reward",
                                   "feedback_time", "live", "validation_score", "feature:age",
                                   "feature:job", "feature:vip", "reward:v2"]
    assert list(frame["decision_id"]) == [f"d{i:02d}" for i in range(12)] + ["nocontext"]
    assert frame["time"].tolist() == [1000.0 + i // 4 for i in range(12)] + [2000.0]
    assert frame["propensity"].tolist() == pytest.approx([0.25 + i / 100 for i in range(12)]
                                                         + [0.5])
    rewards = frame["reward"].tolist()
    assert rewards[0:12:2] == pytest.approx([1.0 - i / 100 for i in range(0, 12, 2)])
    assert all(pd.isna(r) for r in rewards[1::2])
    # stored at 1000.0 by a replica whose clock is behind: never before the decision
    assert frame["feedback_time"].tolist()[0:12:2] == [1000.0, 1000.0, 1001.0, 1001.0,
                                                        1002.0, 1002.0]
    assert frame["feedback_time"].isna().tolist()[1:13:2] == [True] * 6
    assert frame["validation_score"].tolist()[:2] == [0.75, 0.5]  # v1's, then v2's
    assert frame["live"].map(json.loads).tolist() == [["v1", "v2"]] * 13
    assert frame["feature:age"].tolist()[:12] == list(range(12))
    assert pd.isna(frame["feature:age"].iloc[12])
    assert [None if pd.isna(v) else v for v in frame["feature:job"]][:4] == [
        None, "clerk", "clerk", None]
    assert frame["feature:vip"].tolist()[:3] == [True, False, True]
    shadow = frame["reward:v2"].tolist()  # scored with the even decisions' feedback
    assert shadow[0:6:2] == [0.5, 0.5, 0.5] and all(pd.isna(v) for v in shadow[1::2] + shadow[6:])
    path = tmp_path / f"log.{fmt}"  # and banditops evaluate reads it as it is
    path.write_bytes(b"".join(export_bytes(store, plan, fmt)))
    log = read_log(path)
    assert (len(log), log.features, log.shadow_versions) == (13, ["age", "job", "vip"], ["v2"])
    assert log.live_sets[0] == ("v1", "v2") and log.validation_scores() == {"v1": 0.75,
                                                                            "v2": 0.5}
    assert log.contexts()[1] == {"age": 1.0, "job": "clerk", "vip": False}


def test_limit_since_and_until_choose_the_rows(store):
    _log_decisions(store)
    plan = plan_export(store, "main", limit=5)
    assert (plan.rows, plan.truncated) == (5, True)
    frame = _read(b"".join(export_bytes(store, plan, "parquet", chunk_rows=2)), "parquet")
    assert list(frame["decision_id"]) == ["d00", "d01", "d02", "d03", "d04"]
    plan = plan_export(store, "main", since=1001.0, until=2000.0)
    frame = _read(b"".join(export_bytes(store, plan, "csv")), "csv")
    assert list(frame["decision_id"]) == [f"d{i:02d}" for i in range(4, 12)]
    empty = plan_export(store, "main", since=5000.0)
    assert empty.rows == 0 and empty.features == {}
    frame = _read(b"".join(export_bytes(store, empty, "parquet")), "parquet")
    assert len(frame) == 0 and list(frame.columns)[:7] == [
        "decision_id", "time", "version", "propensity", "reward", "feedback_time", "live"]
    assert plan_export(store, "nobody").rows == 0
    with pytest.raises(InvalidParameterError, match=r"since .* is after until"):
        plan_export(store, "main", since=2.0, until=1.0)
    with pytest.raises(InvalidParameterError, match="limit must be at least 1"):
        plan_export(store, "main", limit=0)
    with pytest.raises(InvalidParameterError, match="finite"):
        plan_export(store, "main", since=float("nan"))


def test_export_log_writes_a_whole_file_named_by_its_format(store, tmp_path):
    _log_decisions(store)
    out = tmp_path / "out"
    out.mkdir()
    plan = export_log(store, "main", out / "log.parquet")
    assert plan.rows == 13 and len(pd.read_parquet(out / "log.parquet")) == 13
    export_log(store, "other", out / "other.csv")
    other = pd.read_csv(out / "other.csv")
    assert list(other["decision_id"]) == ["o0", "o1", "o2"]
    assert list(other["feature:secret"]) == [0, 1, 2]
    assert sorted(p.name for p in out.iterdir()) == ["log.parquet", "other.csv"]  # no partial
    with pytest.raises(InvalidParameterError, match=r"\.parquet or \.csv"):
        format_of(out / "log.json")


def test_the_export_log_command_reads_the_database_directly(tmp_path):
    from typer.testing import CliRunner

    from banditops.cli import app

    url = f"sqlite:///{tmp_path / 'service.db'}"
    store = Store(url)
    store.migrate()
    _log_decisions(store)
    store.close()
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(app, ["export-log", "--db", url, *args])
        assert "Traceback" not in result.output
        return result, " ".join(result.output.split())

    result, said = run("--deployment", "main", "--out", str(tmp_path / "main.parquet"))
    assert result.exit_code == 0, said
    assert "13 decisions of main written to" in said and "3 features" in said
    assert list(pd.read_parquet(tmp_path / "main.parquet")["decision_id"])[-1] == "nocontext"
    result, said = run("--deployment", "main", "--out", str(tmp_path / "m.csv"), "--since",
                       "1001", "--limit", "2")
    assert result.exit_code == 0 and "the range holds more" in said, said
    assert list(pd.read_csv(tmp_path / "m.csv")["decision_id"]) == ["d04", "d05"]
    for args, message in [
            (["--out", str(tmp_path / "x.json")], "written as .parquet or .csv"),
            (["--out", str(tmp_path / "x.csv"), "--since", "5", "--until", "1"],
             "since (5) is after until (1)"),
            (["--out", str(tmp_path / "no" / "x.csv")], "No such file or directory")]:
        result, said = run("--deployment", "main", *args)
        assert result.exit_code == 2 and "error:" in said and message in said, said
    (tmp_path / "empty.db").touch()
    result = runner.invoke(app, ["export-log", "--db", f"sqlite:///{tmp_path / 'empty.db'}",
                                 "--deployment", "main", "--out", str(tmp_path / "e.csv")])
    assert result.exit_code == 2 and "schema revision none, not 0007" in " ".join(
        result.output.split())
    result = runner.invoke(app, ["export-log", "--db", "mysql://u:secret@h/db",
                                 "--deployment", "main", "--out", str(tmp_path / "e.csv")])
    assert result.exit_code == 2 and "secret" not in result.output
    assert not (tmp_path / "e.csv").exists() and not (tmp_path / "x.csv").exists()


HOSTILE = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rcr", "'=kept",
           "a\r\nb,\"c\"", "'plain", "é𝕏\u202e", "ok"]


def test_a_csv_export_of_hostile_feature_values_is_safe_and_reads_back_exactly(store, tmp_path):
    """Feature values come from clients: no cell a spreadsheet would run as a formula, a
    carriage return cannot split a row, and banditops evaluate reads every value back."""
    _register(store, "v1", 0.0)
    store.log("main", 10.0**12).record([
        LoggedDecision(f"h{i:02d}", "v1", 0, 1.0, 1000.0 + i, None, (), {"plan": value})
        for i, value in enumerate(HOSTILE)])
    data = b"".join(export_bytes(store, plan_export(store, "main"), "csv"))
    path = tmp_path / "hostile.csv"
    path.write_bytes(data)
    cells = [row[-1] for row in csv.reader(io.StringIO(data.decode(), newline=""))][1:]
    assert len(cells) == len(HOSTILE)
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    log = read_log(path)
    assert [c["plan"] for c in log.contexts()] == HOSTILE


def test_an_unknown_deployment_is_one_clear_error_naming_the_known_ones(store, tmp_path):
    """banditops evaluate --db and export-log with a typo in --deployment (PostgreSQL
    rejected the listing query, reported as 'database unavailable')."""
    from banditops.ope.database import log_from_database
    from banditops.store.export import check_deployment

    _log_decisions(store)
    check_deployment(store, "main")
    for check in (lambda: check_deployment(store, "nope"),
                  lambda: log_from_database(
                      store.engine.url.render_as_string(hide_password=False), "nope")):
        with pytest.raises(InvalidParameterError,
                           match=r"'nope' has no decisions in this database; deployments "
                                 r"with decisions: main, other$"):
            check()
    from typer.testing import CliRunner

    from banditops.cli import app

    url = store.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(app, ["export-log", "--db", url, "--deployment", "nope",
                                      "--out", str(tmp_path / "nope.csv")])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "error: deployment 'nope' has no decisions" in said, said
    assert not (tmp_path / "nope.csv").exists()
