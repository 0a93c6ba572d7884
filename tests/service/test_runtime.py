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
