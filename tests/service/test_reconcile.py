"""The config file and the database reconciled at start-up, across real restarts of a real
server, on SQLite and PostgreSQL: a version new in the file is registered once (one event),
a stored status sticks, a version registered through the API stays, a changed artifact stops
the start-up with one line, a moved file with the same bytes is fine."""

from __future__ import annotations

import shutil
import subprocess
import sys

import httpx
import pytest

from banditops.client import Client
from tests.service.conftest import ADMIN_KEY, CLIENT_KEY, REPO, Server, write_config

VERSION = """
[[deployments.main.versions]]
name = "{name}"
artifact = "{artifact}"
"""


def _config(tmp_path, artifacts, versions: dict[str, str]):
    text = "[deployments.main]\npolicy = \"thompson\"\nfeatures = FEATURES\nguardrail = false\n"
    text += "".join(VERSION.format(name=n, artifact=a) for n, a in versions.items())
    return write_config(tmp_path, artifacts, text)


def _state(url: str) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    with Client(url, CLIENT_KEY) as client:
        statuses = {v["name"]: v["status"] for v in client.deployment("main")["versions"]}
        events = [(e["kind"], e["version"], e["reason"]) for e in client.events("main")]
    return statuses, events


def _registered(events: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    return [(version, reason) for kind, version, reason in events if kind == "registered"]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_config_and_database_are_reconciled_at_each_start(tmp_path, artifacts, database,
                                                           request):
    db = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    good = artifacts / "good.skops"
    config = _config(tmp_path, artifacts, {"v1": good, "v2": artifacts / "good2.skops"})
    server = Server(config, db=db).start()
    try:
        statuses, events = _state(server.url)
        assert statuses == {"v1": "live", "v2": "live"}
        assert _registered(events) == [("v1", "from the config file (live)"),
                                       ("v2", "from the config file (live)")]
        with Client(server.url, ADMIN_KEY) as admin:
            admin.rollback("main", "v2", "by hand")
            admin.register("main", "v3", str(artifacts / "good.onnx"))
    finally:
        server.stop()
    assert "version v1 registered" in server.log.read_text()  # the log line, at start

    # Restart: nothing registered again, the rollback sticks, the API's v3 stays; a version
    # added to the file is registered (once), and a moved file with the same bytes is fine.
    moved = artifacts / f"moved-{database}"
    moved.mkdir(exist_ok=True)
    shutil.copy(good, moved / "v1.skops")
    shutil.copy(good, moved / "v4.skops")
    config = _config(tmp_path, artifacts, {"v1": moved / "v1.skops",
                                           "v2": artifacts / "good2.skops",
                                           "v4": moved / "v4.skops"})
    logs = []
    for _ in range(2):
        server = Server(config, db=db).start()
        try:
            statuses, events = _state(server.url)
        finally:
            server.stop()
        logs.append(server.log.read_text())
        assert statuses == {"v1": "live", "v2": "rolled_back", "v3": "live", "v4": "live"}
        assert _registered(events) == [
            ("v1", "from the config file (live)"), ("v2", "from the config file (live)"),
            ("v3", "version v3 registered and live"), ("v4", "from the config file (live)")]
    assert ["version v4 registered" in log for log in logs] == [True, False]
    assert all("version not in the config file, kept as stored" in log and "version=v3" in log
               for log in logs)

    # A version whose file now holds other bytes stops the start-up, with one line.
    config = _config(tmp_path, artifacts, {"v1": artifacts / "bad.skops",
                                           "v2": artifacts / "good2.skops"})
    args = [sys.executable, "-m", "banditops.cli", "serve", "--config", str(config),
            "--port", str(server.port)] + (["--db", db] if db else [])
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, env={
        **__import__("os").environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}"})
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: deployment main: version v1 in "
                                                   "the config file is "), lines
    assert "bad.skops" in lines[0] and "give the new file a new version name" in lines[0]
    assert "serving on" not in result.stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url}/healthz", timeout=1)
