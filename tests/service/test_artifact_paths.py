"""Where a registration's artifact path points: absolute as given; relative inside each
artifact folder in turn, then from the config file's folder (as in the config file); always
inside an artifact folder, and an error that says what was tried."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from banditops.client import Client, ServiceError
from banditops.errors import ArtifactError
from banditops.service.config import ServiceConfig
from banditops.service.endpoints import artifact_path
from tests.service.conftest import ADMIN_KEY, CLIENT_KEY, Server
from tests.service.models import FEATURES, as_features, make_rows


def test_the_demo_case_a_path_relative_to_the_working_directory(tmp_path, monkeypatch):
    """The demo's artifact folder is relative (``banditops-models``); a path written from
    the folder the server runs in used to become banditops-models/banditops-models/x."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "banditops-models").mkdir()
    (tmp_path / "banditops-models" / "x.skops").write_bytes(b"zip")
    config = ServiceConfig.model_validate({
        "artifact_dirs": ["banditops-models"],
        "deployments": {"d": {"features": {"a": "number"}}}})
    assert artifact_path(config, "banditops-models/x.skops") == str(
        tmp_path / "banditops-models" / "x.skops")
    assert artifact_path(config, "x.skops") == str(tmp_path / "banditops-models" / "x.skops")
    with pytest.raises(ArtifactError) as error:
        artifact_path(config, "y.skops")
    assert str(error.value) == (
        f"artifact y.skops not found; tried {tmp_path}/banditops-models/y.skops (a relative "
        "path is looked up in each of artifact_dirs, then from the config file's folder)")
    with pytest.raises(ArtifactError, match=r"outside the configured artifact_dirs \("
                       r"banditops-models\); tried .*/banditops-models/\.\./secret, "):
        artifact_path(config, "../secret")


def test_registration_paths_against_a_real_server(tmp_path, artifacts):
    for folder, name in (("models", "a.skops"), ("more", "b.skops")):
        (tmp_path / folder).mkdir()
        shutil.copy(artifacts / "good.skops", tmp_path / folder / name)
    (tmp_path / "c.skops").write_bytes((artifacts / "good.skops").read_bytes())  # outside
    features = ", ".join(f'{f} = "number"' for f in FEATURES)
    config = tmp_path / "conf" / "banditops.toml"
    config.parent.mkdir()
    config.write_text(f'''
database = "sqlite:///service.db"
artifact_dirs = ["../models", "../more"]
[[api_keys]]
key = "{CLIENT_KEY}"
scope = "client"
[[api_keys]]
key = "{ADMIN_KEY}"
scope = "admin"
[deployments.main]
features = {{ {features} }}
[[deployments.main.versions]]
name = "v1"
artifact = "../models/a.skops"
''')
    server = Server(config).start()
    try:
        # a registration checks the file in a child process: seconds on a busy machine
        with Client(server.url, ADMIN_KEY, timeout=120) as admin:
            # as written in the config file (from its folder), inside a folder, absolute
            for version, path in (("v2", "../models/a.skops"), ("v3", "b.skops"),
                                  ("v4", str(tmp_path / "more" / "b.skops"))):
                assert admin.register("main", version, path)["status"] == "live"
            with pytest.raises(ServiceError) as error:
                admin.register("main", "v5", "nope.skops")
            assert (error.value.status, error.value.message) == (422, (
                f"artifact nope.skops not found; tried {tmp_path}/conf/../models/nope.skops, "
                f"{tmp_path}/conf/../more/nope.skops (a relative path is looked up in each "
                "of artifact_dirs, then from the config file's folder)"))
            for path in ("../c.skops", str(tmp_path / "c.skops")):
                with pytest.raises(ServiceError, match="outside the configured artifact_dirs"
                                   ) as error:
                    admin.register("main", "v6", path)
                assert error.value.status == 422
            versions = {v["name"]: v["status"] for v in admin.deployment("main")["versions"]}
        assert versions == {"v1": "live", "v2": "live", "v3": "live", "v4": "live"}
        x, _ = make_rows(40, seed=5)
        with Client(server.url, CLIENT_KEY) as client:
            served = {client.predict("main", as_features(row))["version"] for row in x}
        assert served <= set(versions) and len(served) >= 2
    finally:
        server.stop()
    assert not Path(tmp_path / "models" / "models").exists()
