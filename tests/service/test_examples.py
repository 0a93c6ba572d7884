"""examples/: the commented config file loads and names every option, and a real server
started from it is driven by examples/drive.py to the end (models from
examples/make_models.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from banditops.client import Client
from banditops.service.config import load_config
from banditops.service.config_reference import SECTIONS
from tests.service.conftest import REPO, Server

EXAMPLES = REPO / "examples"
KEYS = {"BANDITOPS_ADMIN_KEY": "example-admin-key-0123456789",
        "BANDITOPS_CLIENT_KEY": "example-client-key-0123456789"}


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **KEYS, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_example_config_loads_and_shows_every_option(monkeypatch):
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    config = load_config(EXAMPLES / "config.toml")
    churn = config.deployments["churn"]
    assert config.artifact_dirs == [EXAMPLES / "models"]
    assert config.database == f"sqlite:///{EXAMPLES / 'banditops.db'}"
    assert churn.policy == "thompson" and churn.labels == ["no", "yes"]
    assert churn.guardrail.method == "sequential" and churn.shadow.mode == "all"
    assert churn.release.mode == "dark" and list(churn.features) == ["age", "plan"]
    assert [v.artifact for v in churn.versions] == [
        str(EXAMPLES / "models" / "churn-v1.skops"), str(EXAMPLES / "models" / "churn-v2.skops")]
    text = (EXAMPLES / "config.toml").read_text()
    missing = [f"{model.__name__}.{field}" for _, model in SECTIONS
               for field in model.model_fields  # as a key, or a table ([api_keys], ...)
               if not re.search(rf"(^|[\s{{\[.]){field}( =|\]|\.)", text, re.M)]
    assert not missing, f"examples/config.toml does not show {missing}"


def test_drive_py_drives_a_server_started_from_the_example_config(tmp_path, monkeypatch):
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)  # the server reads its keys from these
    shutil.copy(EXAMPLES / "config.toml", tmp_path / "config.toml")  # db, models: in tmp_path
    made = _run(str(EXAMPLES / "make_models.py"), "--out", str(tmp_path / "models"))
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "churn-v1.skops", "churn-v2.skops"]
    server = Server(tmp_path / "config.toml").start()
    try:
        drive = _run(str(EXAMPLES / "drive.py"), "--url", server.url, "--requests", "300")
        assert drive.returncode == 0, drive.stdout + drive.stderr
        lines = drive.stdout.splitlines()
        served = next(line for line in lines if line.startswith("predicted "))
        assert served.startswith("predicted 300 customers: v1 ") and ", v2 " in served
        for expected in ("feedback: 300 of 300 recorded",
                         "  #1 registered v1: from the config file (live)",
                         "  #2 registered v2: from the config file (live)",
                         "rolled back v2: rolled_back", "reinstated v2: live",
                         "  #3 rolled_back v2: rolled back by hand (examples/drive.py)",
                         "  #4 reinstated v2: reinstated by hand (examples/drive.py)"):
            assert expected in lines, drive.stdout
        assert lines[-1] == "done"
        with Client(server.url, KEYS["BANDITOPS_CLIENT_KEY"]) as client:
            versions = client.deployment("churn")["versions"]
        assert {v["name"]: v["status"] for v in versions} == {"v1": "live", "v2": "live"}
        assert sum(v["feedbacks"] for v in versions) == 300
    finally:
        server.stop()
    assert (tmp_path / "banditops.db").exists()  # the copy's database, not the repo's
