"""`banditops serve` refuses a bad config with one message naming the problem; the config
derives its policy and guardrail rules and defaults from the library."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from banditops.cli import app
from banditops.guardrails import Guardrail, GuardrailParams
from banditops.release import ReleaseParams
from banditops.rewards import CostMatrix, accuracy
from banditops.service.config import (
    ConfigError,
    DeploymentConfig,
    GuardrailConfig,
    ReleaseConfig,
    ServiceConfig,
    ShadowConfig,
    check_database_url,
    load_config,
)
from banditops.shadow import ShadowParams
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
     "deployments.main.policy: unknown policy 'magic'"),
    (lambda t: t.replace('scope = "client"', 'scope = "root"'),
     "api_keys.0.scope: Input should be 'client' or 'admin'"),
    (lambda t: t.replace("allow_pickle = false", "allow_pickle = false\nmax_batch = 0"),
     "max_batch: Input should be greater than or equal to 1"),
    (lambda t: t.replace("features = {", "colour = 1\nfeatures = {"),
     "deployments.main.colour: Extra inputs are not permitted"),
    (lambda t: t.replace("good.skops", "exploding.joblib"), "set allow_pickle = true"),
    (lambda t: t.replace("good.skops", "nothing.skops"), "nothing.skops not found"),
    (lambda t: t.replace("features = {", "guardrail = { min_samples = 1 }\nfeatures = {"),
     "deployments.main.guardrail: min_samples must be at least 2"),
    (lambda t: t.replace("features = {", 'guardrail = { method = "vibes" }\nfeatures = {'),
     "deployments.main.guardrail: method must be one of ('welch', 'bayes', 'sequential'), "
     "got 'vibes'"),
    (lambda t: t.replace("features = {", "guardrail = { window = 100 }\nfeatures = {"),
     "deployments.main.guardrail: window (100) must be at least min_samples (200)"),
    (lambda t: t.replace("features = {", "guardrail = { check_every = true }\nfeatures = {"),
     "deployments.main.guardrail: check_every: Input should be a valid integer"),
    (lambda t: t.replace("features = {", 'policy = "epsilon-greedy"\n'
                         "policy_params = { epsilon = 1.5 }\nfeatures = {"),
     "deployments.main.policy_params: epsilon must be in [0.0, 1.0], got 1.5"),
    (lambda t: t.replace("features = {", 'policy = "ucb1"\n'
                         "policy_params = { epsilon = 0.1 }\nfeatures = {"),
     "deployments.main.policy_params: bad parameters for policy 'ucb1': unknown parameter "
     "'epsilon'; known: c, prior_weight, cold_start_retry"),
    (lambda t: t.replace("features = {", "labels = [0, 1, 0]\nfeatures = {"),
     "deployments.main.labels: labels repeat"),
    (lambda t: t.replace("features = {", 'labels = ["a", "b"]\npositive = "c"\n'
                         "reward = { tp = 1, fp = 0.9, fn = 0, tn = 1 }\nfeatures = {"),
     "deployments.main: positive 'c' is not one of labels ['a', 'b']"),
    (lambda t: t.replace('key = "client-key-0123456789"', 'key = "short-key"'),
     "api_keys.0.key: an API key needs at least 16 printable ASCII"),
    (lambda t: t.replace('key = "client-key-0123456789"', 'key = "clé-client-0123456789"'),
     "api_keys.0.key: an API key needs at least 16 printable ASCII"),
    (lambda t: t.replace("allow_pickle = false", 'allow_pickle = false\ntrusted_types = '
                         '["numpy."]'), "trusted_types: 'numpy.' looks like a prefix"),
    (lambda t: t.replace("allow_pickle = false", "allow_pickle = false\n"
                         "model_timeout_strikes = 21"),
     "model_timeout_strikes (21) must be at most model_timeout_window (20)"),
    (lambda t: t.replace("allow_pickle = false", "allow_pickle = false\nmax_queue = 0"),
     "max_queue: Input should be greater than or equal to 1"),
    (lambda t: t.replace("allow_pickle = false", "allow_pickle = false\nshadow_queue = 0"),
     "shadow_queue: Input should be greater than or equal to 1"),
    (lambda t: t.replace("features = {", 'shadow = { mode = "sometimes" }\nfeatures = {'),
     "deployments.main.shadow: shadow mode must be one of ('all', 'rate', 'evaluating'), got "
     "'sometimes' (or false for no shadow scoring)"),
    (lambda t: t.replace("features = {", 'shadow = { mode = "all", rate = 0.1 }\nfeatures = {'),
     "deployments.main.shadow: rate applies to mode 'rate' only; mode is 'all'"),
    (lambda t: t.replace("features = {", 'shadow = { mode = "rate", rate = 0 }\nfeatures = {'),
     "deployments.main.shadow: rate must be"),
    (lambda t: t.replace("features = {", 'shadow = { mode = "all", colour = 1 }\nfeatures = {'),
     "deployments.main.shadow: colour: Extra inputs are not permitted"),
    (lambda t: t.replace("features = {", "shadow = true\nfeatures = {"),
     "deployments.main.shadow: Input should be a valid dictionary"),
    (lambda t: t.replace("features = {", 'release = { mode = "grey" }\nfeatures = {'),
     "deployments.main.release: release mode must be one of ('live', 'dark'), got 'grey' (or "
     "false to release every version live)"),
    (lambda t: t.replace("features = {", 'release = { mode = "dark", margin = 2 }\nfeatures = {'),
     "deployments.main.release: margin must be"),
    (lambda t: t.replace("features = {", 'release = { mode = "dark", min_samples = 1 }\n'
                         "features = {"),
     "deployments.main.release: min_samples must be at least 2"),
    (lambda t: t.replace("features = {", 'release = { mode = "dark" }\nshadow = false\n'
                         "features = {"),
     "deployments.main: release mode 'dark' judges new versions on their shadow predictions; "
     "shadow = false contradicts it"),
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


@pytest.mark.parametrize("value", ["short-0123", "nön-ascii-key-0123456789",
                                   "with space 0123456789"])
def test_a_bad_api_key_in_the_environment_is_one_line(tmp_path, artifacts, monkeypatch, value):
    path = write_config(tmp_path, artifacts, GOOD.replace("ARTIFACTS", str(artifacts)))
    monkeypatch.setenv("TEST_ADMIN_KEY", value)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message and value not in message
    assert message == ("environment variable TEST_ADMIN_KEY must hold an API key of at least 16 "
                       "printable ASCII characters, no spaces (is not a valid key)")
    result = runner.invoke(app, ["serve", "--config", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://admin:hunter2-secret@db.example:notaport/prod",
    "postgres://admin:hunter2-secret@db.example/prod",
    "mysql://admin:hunter2-secret@db.example/prod",
    "postgresql://admin:hunter2@secret@db.example/prod",
    "admin:hunter2-secret",
])
def test_a_bad_database_url_never_shows_its_password(tmp_path, artifacts, url):
    path = write_config(tmp_path, artifacts, GOOD.replace("ARTIFACTS", str(artifacts)))
    path.write_text(path.read_text().replace('database = "sqlite:///', f'database = "{url}"\n#'))
    with pytest.raises(ConfigError, match="database: ") as caught:
        load_config(path)
    assert "hunter2" not in str(caught.value) and "secret" not in str(caught.value)
    assert "\n" not in str(caught.value)
    result = runner.invoke(app, ["serve", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "hunter2" not in result.output and "Traceback" not in result.output
    assert "database: " in result.output


def test_good_database_urls_pass_and_hide_the_password_when_refused():
    for url in ("sqlite:///banditops.db", "sqlite:////tmp/x.db", "sqlite://",
                "postgresql+psycopg://user:pw@127.0.0.1:5432/test"):
        assert check_database_url(url) == url
    with pytest.raises(ConfigError,
                       match=r"postgresql\+psycopg://\.\.\.; got postgres://admin:\*\*\*@h/db"):
        check_database_url("postgres://admin:hunter2@h/db")


def test_service_guardrail_defaults_are_the_librarys():
    assert GuardrailConfig().params() == GuardrailParams()
    assert set(GuardrailConfig.model_fields) == {f.name for f in dataclasses.fields(
        GuardrailParams)}
    for field in dataclasses.fields(GuardrailParams):
        assert GuardrailConfig.model_fields[field.name].default == field.default, field.name
    deployment = DeploymentConfig(features={"x": "number"})
    assert deployment.guardrail.params() == GuardrailParams(min_samples=200, check_every=10)
    guardrail = Guardrail.from_params(DeploymentConfig(
        features={"x": "number"}, guardrail={"method": "bayes", "min_samples": 50}
    ).guardrail.params())
    assert (guardrail.method, guardrail.min_samples, guardrail.check_every) == ("bayes", 50, 10)
    assert DeploymentConfig(features={"x": "number"}, guardrail=False).guardrail is False


@pytest.mark.parametrize(("section", "library"), [(ShadowConfig, ShadowParams),
                                                   (ReleaseConfig, ReleaseParams)])
def test_service_shadow_and_release_defaults_are_the_librarys(section, library):
    assert section().params() == library()
    assert set(section.model_fields) == {f.name for f in dataclasses.fields(library)}
    for field in dataclasses.fields(library):
        assert section.model_fields[field.name].default == field.default, field.name


def test_shadow_and_release_sections_make_the_deployment_arguments():
    features = {"x": "number"}
    plain = DeploymentConfig(features=features)
    assert (plain.shadow_params(), plain.release_params(), plain.dark_launch) == (
        None, None, False)
    assert DeploymentConfig(features=features, shadow=False, release=False).shadow_params() \
        is None
    rate = DeploymentConfig(features=features, shadow={"mode": "rate", "rate": 0.1, "seed": 3})
    assert rate.shadow_params() == ShadowParams(mode="rate", rate=0.1, seed=3)
    dark = DeploymentConfig(features=features, release={"mode": "dark", "margin": 0.02})
    assert dark.dark_launch and dark.shadow_params() is None  # the Deployment implies one
    assert dark.release_params() == ReleaseParams(mode="dark", margin=0.02)
    assert not DeploymentConfig(features=features, release={"mode": "live"}).dark_launch


def test_policy_params_are_checked_at_load_and_may_carry_a_seed():
    config = DeploymentConfig(features={"x": "number"}, policy="epsilon-greedy",
                              policy_params={"epsilon": 0.3, "seed": 3})
    assert config.policy_params == {"epsilon": 0.3, "seed": 3}
    for params, message in [({"epsilon": -1}, "epsilon must be"),
                            ({"decay": 0}, "decay must be"), ({"seed": 1.5}, "seed must be"),
                            ({"cold_start_retry": 0}, "cold_start_retry must be")]:
        with pytest.raises(ValueError, match=f"policy_params\n.*{message}"):
            DeploymentConfig(features={"x": "number"}, policy="epsilon-greedy",
                             policy_params=params)


def test_labels_positive_and_the_reward_function():
    features = {"x": "number"}
    plain = DeploymentConfig(features=features)
    assert plain.reward_function() is accuracy and plain.label_classes() is None
    labelled = DeploymentConfig(features=features, labels=["<=50K", ">50K"])
    assert labelled.label_classes() == ("<=50K", ">50K")
    cells = {"tp": 1, "fp": 0.9, "fn": 0, "tn": 1}
    binary = DeploymentConfig(features=features, reward=cells)
    reward = binary.reward_function()
    assert isinstance(reward, CostMatrix) and reward.classes == (0, 1)
    assert binary.label_classes() == (0, 1)
    adult = DeploymentConfig(features=features, reward=cells, labels=["<=50K", ">50K"],
                             positive=">50K")
    assert adult.reward_function().classes == ("<=50K", ">50K")
    assert adult.reward_function()(">50K", "<=50K") == 0.0
    flipped = DeploymentConfig(features=features, reward=cells, positive=0)
    assert flipped.reward_function().classes == (1, 0)
    typed = DeploymentConfig(features=features, labels=[1, True, "1"])
    assert [type(label) for label in typed.labels] == [int, bool, str]  # three distinct labels
    for kwargs, message in [
        ({"labels": [1]}, "at least 2"), ({"labels": ["a"] * 3}, "labels repeat"),
        ({"labels": list(range(1001))}, "at most 1000"), ({"labels": ["a", "x" * 257]}, "256"),
        ({"labels": ["a", "b\x00"]}, "NUL"), ({"labels": [0, 1.5]}, "labels"),
        ({"positive": 1}, "cost-matrix reward only"),
        ({"reward": cells, "labels": ["a", "b"]}, "positive 1 is not one of labels"),
        ({"reward": cells, "labels": [0, 1, 2]}, "exactly two labels"),
        ({"reward": cells, "labels": [0, 1], "positive": True}, "positive True is not one of"),
        ({"reward": cells, "positive": "1"}, "positive '1' is not one of labels"),
    ]:
        with pytest.raises(ValueError, match=message):
            DeploymentConfig(features=features, **kwargs)


def test_service_fields_and_their_defaults():
    config = ServiceConfig(deployments={"main": {"features": {"x": "number"}}})
    assert (config.trusted_types, config.model_timeout_window, config.model_timeout_strikes,
            config.model_warmup_calls, config.max_queue, config.micro_batch,
            config.body_timeout_seconds, config.keep_alive_seconds, config.max_connections,
            config.db_timeout_seconds, config.shadow_queue) == (
                [], 20, 5, 3, 1024, 64, 4.0, 5.0, 1000, 5.0, 10_000)
    assert not config.deployments["main"].feedback_same_key
    exact = "sklearn.linear_model._logistic.LogisticRegression"
    assert ServiceConfig(trusted_types=[exact], deployments=config.deployments).trusted_types \
        == [exact]
    for bad in ("sklearn.", "sklearn.*", "numpy.*.load", "builtins", "", "a b.c"):
        with pytest.raises(ValueError, match="trusted_types"):
            ServiceConfig(trusted_types=[bad], deployments=config.deployments)
    for field in ("body_timeout_seconds", "keep_alive_seconds", "db_timeout_seconds"):
        for bad in (0, -1, float("inf"), float("nan")):
            with pytest.raises(ValueError, match=field):
                ServiceConfig(**{field: bad}, deployments=config.deployments)
    with pytest.raises(ConfigError, match=r"api_keys\.1: the same key is configured twice"):
        ServiceConfig(api_keys=[{"key": "k" * 16, "scope": "client"},
                                {"key": "k" * 16, "scope": "admin"}],
                      deployments=config.deployments).keys()
