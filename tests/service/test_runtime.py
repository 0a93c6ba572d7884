"""ServiceDeployment in-process: replicas on one PostgreSQL never leave a deployment without a
live version, whatever order their take-downs commit in."""

from __future__ import annotations

import pytest
from sklearn.linear_model import LogisticRegression
from skops.io import dump

from banditops.errors import StateConflictError
from banditops.service.config import ServiceConfig
from banditops.service.runtime import ServiceDeployment
from banditops.store.sql import Store
from tests.service.models import FEATURES, make_rows


def _replica(url: str, folder) -> ServiceDeployment:
    config = ServiceConfig.model_validate({
        "database": url, "artifact_dirs": [str(folder)],
        "api_keys": [{"key": "k" * 20, "scope": "admin"}],
        "deployments": {"main": {
            "policy": "epsilon-greedy", "labels": [0, 1], "guardrail": False,
            "features": {f: "number" for f in FEATURES},
            "versions": [{"name": v, "artifact": str(folder / "good.skops")}
                         for v in ("v1", "v2", "v3")]}}})
    store = Store(config.database)
    store.migrate()
    replica = ServiceDeployment("main", config.deployments["main"], config, store)
    replica.start()
    return replica


def test_concurrent_take_downs_on_two_replicas_keep_one_version_live(tmp_path, postgres_url):
    x, y = make_rows(500)
    dump(LogisticRegression().fit(x, y), tmp_path / "good.skops")
    a, b = _replica(postgres_url, tmp_path), _replica(postgres_url, tmp_path)
    a.rollback("v3", "by hand")
    b.sync()
    # Both replicas see v1 and v2 live and each takes one down before seeing the other's.
    a.deployment.rollback("v1", "race")
    b.deployment.rollback("v2", "race")
    a._settle_refusals()  # the first to commit wins
    with pytest.raises(StateConflictError, match="last live version"):
        b._settle_refusals()
    a.sync()
    assert a.live_versions == b.live_versions == ["v2"]
    statuses = {row.name: row.status for row in a.store.versions("main")}
    assert statuses == {"v1": "rolled_back", "v2": "live", "v3": "rolled_back"}
    # Through the public method the same conflict is a 409-class error, never zero live.
    with pytest.raises(StateConflictError):
        b.retire("v2", "no")
    assert b.live_versions == ["v2"]


def _dark_replica(url: str, folder) -> ServiceDeployment:
    config = ServiceConfig.model_validate({
        "database": url, "artifact_dirs": [str(folder)],
        "api_keys": [{"key": "k" * 20, "scope": "admin"}],
        "deployments": {"main": {
            "policy": "thompson", "labels": [0, 1], "guardrail": False,
            "release": {"mode": "dark", "min_samples": 30, "check_every": 5},
            "features": {f: "number" for f in FEATURES},
            "versions": [{"name": "v1", "artifact": str(folder / "good.skops")}]}}})
    store = Store(config.database)
    store.migrate()
    replica = ServiceDeployment("main", config.deployments["main"], config, store)
    replica.start()
    return replica


def test_dark_versions_are_judged_once_across_replicas(tmp_path, postgres_url):
    """A dark release registered on one replica is dark on the other; a promotion by hand
    reaches the other through the database; a verdict both replicas reach from the same
    shadow evidence is stored once."""
    x, y = make_rows(500)
    dump(LogisticRegression().fit(x, y), tmp_path / "good.skops")
    dump(LogisticRegression().fit(x, 1 - y), tmp_path / "bad.skops")
    a, b = _dark_replica(postgres_url, tmp_path), _dark_replica(postgres_url, tmp_path)
    assert a.register("cand", str(tmp_path / "good.skops"), None) == "dark"
    b.sync()
    assert b.deployment.status("cand") == "dark" and b.deployment.dark_versions == ["cand"]
    a.promote("cand", "by hand")
    b.sync()
    assert b.deployment.status("cand") == "live" and b.live_versions == ["v1", "cand"]

    assert a.register("worse", str(tmp_path / "bad.skops"), None) == "dark"
    b.sync()
    rows = [{f: float(v) for f, v in zip(FEATURES, row, strict=True)} for row in x[:200]]
    answers = a.predict(rows)
    assert all(answer["version"] in ("v1", "cand") for answer in answers)
    assert a.shadow([(d["decision_id"], d["version"], row)
                     for d, row in zip(answers, rows, strict=True)]) == (200, 0)
    labels = [(d["decision_id"], int(label)) for d, label in zip(answers, y[:200], strict=True)]
    for start in range(0, 200, 20):  # labels reach both replicas, each catching up on the other
        replica = (a, b)[start // 20 % 2]
        assert {o.status for o in replica.feedback(labels[start:start + 20])} == {"recorded"}
        (b, a)[start // 20 % 2].sync()
    assert a.deployment.status("worse") == b.deployment.status("worse") == "rolled_back"
    statuses = {row.name: row.status for row in a.store.versions("main")}
    assert statuses == {"v1": "live", "cand": "live", "worse": "rolled_back"}
    kinds = [(e["kind"], e["version"]) for e in a.events(0, 1000)]
    assert kinds.count(("rolled_back", "worse")) == 1 and kinds.count(("promoted", "cand")) == 1
    c = _dark_replica(postgres_url, tmp_path)  # a restart sees the same
    assert {n: c.deployment.status(n) for n in ("v1", "cand", "worse")} == statuses


def test_a_promotion_another_replica_overtook_is_refused_not_lost(tmp_path, postgres_url):
    """Replica A rolls a dark version back while replica B, not synced yet, promotes it: B's
    promotion is not stored, B answers a conflict and follows the database (rolled back)."""
    x, y = make_rows(500)
    dump(LogisticRegression().fit(x, y), tmp_path / "good.skops")
    a, b = _dark_replica(postgres_url, tmp_path), _dark_replica(postgres_url, tmp_path)
    assert a.register("cand", str(tmp_path / "good.skops"), None) == "dark"
    b.sync()
    a.rollback("cand", "by hand on A")
    b.deployment.promote("cand", "by hand on B")  # B acts on what it knew (as a race would)
    with pytest.raises(StateConflictError, match="cand is rolled_back"):
        b._settle_refusals()
    assert b.deployment.status("cand") == "rolled_back"
    kinds = [e["kind"] for e in a.store.events("main") if e["version"] == "cand"]
    assert "promoted" not in kinds and kinds.count("rolled_back") == 1
    for replica in (a, b):
        replica.store.close()


def test_shadow_rewards_of_a_version_another_replica_just_registered_are_learned(
        tmp_path, postgres_url):
    """B gets the labels of decisions A shadow-scored with a version B has not synced yet:
    B catches up first and learns every shadow reward, as A would."""
    x, y = make_rows(500)
    dump(LogisticRegression().fit(x, y), tmp_path / "good.skops")
    a, b = _dark_replica(postgres_url, tmp_path), _dark_replica(postgres_url, tmp_path)
    assert a.register("cand", str(tmp_path / "good.skops"), None) == "dark"  # B: not synced
    rows = [{f: float(v) for f, v in zip(FEATURES, row, strict=True)} for row in x[:20]]
    answers = a.predict(rows)
    assert a.shadow([(d["decision_id"], d["version"], row)
                     for d, row in zip(answers, rows, strict=True)]) == (20, 0)
    outcomes = b.feedback([(d["decision_id"], int(label))
                           for d, label in zip(answers, y[:20], strict=True)])
    assert {o.status for o in outcomes} == {"recorded"}
    a.sync()
    for replica in (a, b):
        shadow = {v["name"]: v["shadow_rewards"] for v in replica.report()["versions"]}
        assert shadow["cand"] == 20, shadow
        replica.store.close()
