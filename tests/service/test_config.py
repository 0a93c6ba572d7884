"""`banditops serve` refuses a bad config with one message naming the problem."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from banditops.cli import app
from tests.service.conftest import write_config

runner = CliRunner()
GOOD = """
[deployments.main]
features = FEATURES
[[deployments.main.versions]]
name = "v1"
artifact = "ARTIFACTS/good.skops"
"""


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t + "\n[broken", "cannot read config"),
    (lambda t: t.replace('features = {', 'policy = "magic"\nfeatures = {'),
     "deployments.main.policy: Value error, unknown policy 'magic'"),
    (lambda t: t.replace('scope = "client"', 'scope = "root"'),
     "api_keys.0.scope: Input should be 'client' or 'admin'"),
    (lambda t: t.replace("allow_pickle = false", "allow_pickle = false\nmax_batch = 0"),
     "max_batch: Input should be greater than or equal to 1"),
    (lambda t: t.replace("features = {", "colour = 1\nfeatures = {"),
     "deployments.main.colour: Extra inputs are not permitted"),
    (lambda t: t.replace("good.skops", "exploding.joblib"), "set allow_pickle = true"),
    (lambda t: t.replace("good.skops", "nothing.skops"), "nothing.skops not found"),
])
def test_bad_configs_end_in_one_message(tmp_path, artifacts, change, message):
    path = write_config(tmp_path, artifacts, GOOD.replace("ARTIFACTS", str(artifacts)))
    path.write_text(change(path.read_text()))
    result = runner.invoke(app, ["serve", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert message in " ".join(result.output.split())


def test_an_api_key_in_a_missing_variable_is_reported(tmp_path, artifacts, monkeypatch):
    path = write_config(tmp_path, artifacts, GOOD.replace("ARTIFACTS", str(artifacts)))
    monkeypatch.delenv("TEST_ADMIN_KEY")
    result = runner.invoke(app, ["serve", "--config", str(path)])
    assert result.exit_code == 2
    assert "environment variable TEST_ADMIN_KEY must hold an API key" in result.output
