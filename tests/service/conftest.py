"""Real server processes on loopback ports, real SQLite files and a real PostgreSQL.

PostgreSQL: ``BANDITOPS_TEST_PG`` (default postgresql+psycopg://postgres@127.0.0.1:5432/test);
each test that needs it gets a fresh database, dropped afterwards. If the server is not
reachable the tests fail; they never skip (CI starts it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import joblib
import pytest
from sklearn.linear_model import LogisticRegression
from skops.io import dump

from tests.service.models import FEATURES, Exploding, Slow, make_rows

REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("BANDITOPS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CLIENT_KEY, ADMIN_KEY = "client-key-0123456789", "admin-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``banditops serve`` in its own process."""

    def __init__(self, config: Path, db: str | None = None, port: int | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.config, self.db, self.args = config, db, args
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = config.parent / f"server-{self.port}.log"

    def start(self, wait: bool = True) -> Server:
        args = [sys.executable, "-m", "banditops.cli", "serve", "--config", str(self.config),
                "--port", str(self.port)]
        if self.db:
            args += ["--db", self.db]
        args += self.args
        env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
               "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(args, env=env, stdout=self.log.open("ab"),
                                        stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready in {timeout}s: {self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


def headers(key: str = CLIENT_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """good.skops, bad.skops (learned the opposite rule), good.onnx, exploding/slow.joblib."""
    folder = tmp_path_factory.mktemp("models")
    x, y = make_rows(2000)
    good = LogisticRegression().fit(x, y)
    dump(good, folder / "good.skops")
    dump(good, folder / "good2.skops")
    dump(LogisticRegression().fit(x, 1 - y), folder / "bad.skops")
    from skl2onnx import to_onnx

    onnx = to_onnx(good, x[:1].astype("float32"), options={"zipmap": False})
    (folder / "good.onnx").write_bytes(onnx.SerializeToString())
    joblib.dump(Exploding(), folder / "exploding.joblib")
    joblib.dump(Slow(), folder / "slow.joblib")
    (folder / "junk.skops").write_bytes(b"not a zip file")
    return folder


def write_config(folder: Path, artifacts: Path, deployments: str, *, allow_pickle: bool = False,
                 extra: str = "") -> Path:
    features = ", ".join(f'{name} = "number"' for name in FEATURES)
    text = f'''
database = "sqlite:///{folder / 'service.db'}"
artifact_dirs = ["{artifacts}"]
allow_pickle = {str(allow_pickle).lower()}
{extra}

[[api_keys]]
key = "{CLIENT_KEY}"
scope = "client"

[[api_keys]]
key_env = "TEST_ADMIN_KEY"
scope = "admin"
''' + deployments.replace("FEATURES", "{" + features + "}")
    path = folder / "banditops.toml"
    path.write_text(text)
    os.environ["TEST_ADMIN_KEY"] = ADMIN_KEY
    return path


def good_and_bad(artifacts: Path, policy: str) -> str:
    """A deployment 'main' of a good and a bad version, no guardrail (so none is removed)."""
    return f"""
[deployments.main]
policy = "{policy}"
policy_params = {{ {'epsilon = 0.3' if policy == 'epsilon-greedy' else ''} }}
features = FEATURES
guardrail = false
[[deployments.main.versions]]
name = "good"
artifact = "{artifacts}/good.skops"
[[deployments.main.versions]]
name = "bad"
artifact = "{artifacts}/bad.skops"
"""


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database for one test."""
    import psycopg

    base = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"{os.environ.get('BANDITOPS_TEST_DB_PREFIX', 'banditops_')}{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL}: {error}. Start it "
                    "(.ci/run does) or set BANDITOPS_TEST_PG.")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield PG_URL.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
