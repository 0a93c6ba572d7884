"""`banditops serve` without a config: the demo deployment on the census data."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from tests.service.conftest import REPO, free_port

CLIENT, ADMIN = "demo-client-key-0123456789", "demo-admin-key-0123456789"


def test_the_demo_deployment_serves_census_requests(tmp_path, data_dir):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
           "BANDITOPS_API_KEY": CLIENT, "BANDITOPS_ADMIN_KEY": ADMIN,
           "BANDITOPS_DATA_DIR": str(data_dir)}
    log = tmp_path / "server.log"
    process = subprocess.Popen([sys.executable, "-m", "banditops.cli", "serve", "--port",
                                str(port)], cwd=tmp_path, env=env, stdout=log.open("wb"),
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # trains two models first: generous on 2 busy cores
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"not ready in 180 s: {log.read_text()}"
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        person = {"age": 52, "workclass": "Self-emp-inc", "fnlwgt": 287927,
                  "education": "HS-grad", "education_num": 9,
                  "marital_status": "Married-civ-spouse", "occupation": "Exec-managerial",
                  "relationship": "Wife", "race": "White", "sex": "Female",
                  "capital_gain": 15024, "capital_loss": 0, "hours_per_week": 40,
                  "native_country": "United-States"}
        auth = {"Authorization": f"Bearer {CLIENT}"}
        decision = httpx.post(f"{url}/v1/deployments/adult/predict", headers=auth,
                              json={"features": person}).json()
        assert decision["prediction"] == 1  # a capital gain of 15,024: >50K by any model
        # The census label as written in the data is not the deployment's class: refused,
        # and the decision stays open for the right label.
        wrong = httpx.post(f"{url}/v1/deployments/adult/feedback", headers=auth,
                           json={"decision_id": decision["decision_id"], "label": ">50K"})
        assert wrong.status_code == 422 and "known classes [0, 1]" in wrong.json()["detail"]
        assert httpx.post(f"{url}/v1/deployments/adult/feedback", headers=auth,
                          json={"decision_id": decision["decision_id"], "label": 1}
                          ).json()["reward"] == 1.0
        assert (tmp_path / "banditops.db").exists()
        assert sorted(p.suffix for p in (tmp_path / "banditops-models").iterdir()) == \
            [".score", ".score", ".skops", ".skops"]
        shown = log.read_text()  # keys from the environment are named, never printed
        assert "client key: (from $BANDITOPS_API_KEY)" in shown
        assert "admin key:  (from $BANDITOPS_ADMIN_KEY)" in shown
        assert CLIENT not in shown and ADMIN not in shown
    finally:
        process.terminate()
        process.wait(10)


def test_demo_keys_come_from_the_examples_variables_or_are_generated(monkeypatch):
    from banditops.demo_config import demo_keys

    for variable in ("BANDITOPS_CLIENT_KEY", "BANDITOPS_API_KEY", "BANDITOPS_ADMIN_KEY"):
        monkeypatch.delenv(variable, raising=False)
    keys, shown = demo_keys()
    assert keys == shown and len(set(keys.values())) == 2  # generated: shown once, to use
    monkeypatch.setenv("BANDITOPS_API_KEY", "older-client-variable-0123")
    monkeypatch.setenv("BANDITOPS_CLIENT_KEY", "examples-client-key-0123")
    monkeypatch.setenv("BANDITOPS_ADMIN_KEY", "examples-admin-key-01234")
    keys, shown = demo_keys()
    assert keys == {"client": "examples-client-key-0123", "admin": "examples-admin-key-01234"}
    assert shown == {"client": "(from $BANDITOPS_CLIENT_KEY)",
                     "admin": "(from $BANDITOPS_ADMIN_KEY)"}
