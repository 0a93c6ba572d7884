"""Off-policy evaluation: estimators, the decision-log file, the target walk, the CLI."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from banditops.cli import app
from banditops.guardrails import GuardrailParams
from banditops.ope import (
    DecisionLogFrame,
    LogFormatError,
    OffPolicyData,
    evaluate,
    kish_ess,
    read_log,
    validate_log,
    write_log,
)
from banditops.ope.estimators import dr, ips, snips, switch_dr
from banditops.ope.logfile import live_json
from banditops.ope.reward_model import windowed_means
from banditops.policies import Policy
from banditops.rewards import accuracy
from banditops.simulation.ope_check import (
    LOGGERS,
    check_seed,
    path_value,
    record_replay,
    replay_log,
)
from banditops.simulation.pipeline import Release
from banditops.simulation.replay import replay
from banditops.simulation.strategies import STRATEGIES
from banditops.simulation.stream import StreamSettings, stream_from_releases


# ------------------------------------------------------------------ estimators
def small_case() -> OffPolicyData:
    """Two versions, four rows; the target gives version 0 0.8 and version 1 0.2."""
    target = np.array([[0.8, 0.2]] * 4)
    return OffPolicyData(reward=np.array([1.0, 0.0, 1.0, 1.0]),
                         propensity=np.array([0.5, 0.5, 0.25, 0.75]),
                         action=np.array([0, 1, 1, 0]), target_dist=target,
                         q_hat=np.array([[0.5, 0.5]] * 4))


def test_estimators_match_hand_computed_values():
    data = small_case()
    weights = [0.8 / 0.5, 0.2 / 0.5, 0.2 / 0.25, 0.8 / 0.75]  # 1.6, 0.4, 0.8, 1.0667
    assert data.weights.tolist() == pytest.approx(weights)
    ips_terms = [1.6, 0.0, 0.8, 0.8 / 0.75]
    found = ips(data)
    assert found.value == pytest.approx(sum(ips_terms) / 4)
    assert found.se == pytest.approx(np.std(ips_terms, ddof=1) / 2)
    assert (found.ci_low, found.ci_high) == pytest.approx(
        (found.value - 1.959964 * found.se, found.value + 1.959964 * found.se), rel=1e-6)
    assert found.ess == pytest.approx(sum(weights) ** 2 / sum(w * w for w in weights))
    self_normalised = snips(data)
    assert self_normalised.value == pytest.approx(sum(ips_terms) / sum(weights))
    # DR: q_target is 0.5 on every row; correction w (r - 0.5).
    dr_terms = [0.5 + w * (r - 0.5) for w, r in zip(weights, [1, 0, 1, 1], strict=True)]
    assert dr(data).value == pytest.approx(np.mean(dr_terms))
    assert dr(data).se == pytest.approx(np.std(dr_terms, ddof=1) / 2)
    # switch-DR with a threshold below every weight is the model alone: 0.5.
    assert switch_dr(data, taus=np.array([0.1])).value == pytest.approx(0.5)
    assert switch_dr(data, taus=np.array([np.inf])).value == pytest.approx(dr(data).value)


def test_kish_effective_sample_size():
    assert kish_ess(np.ones(10)) == 10
    assert kish_ess(np.array([4.0, 0.0, 0.0, 0.0])) == 1
    assert kish_ess(np.array([1.0, 3.0])) == pytest.approx(16 / 10)
    assert kish_ess(np.zeros(3)) == 0


def simulated_bandit(seed: int, n: int = 3000) -> tuple[OffPolicyData, float]:
    """Three versions with Bernoulli rewards; the logger explores (0.6, 0.2, 0.2), the
    target prefers the best (0.1, 0.2, 0.7): true value 0.1*0.3 + 0.2*0.5 + 0.7*0.7."""
    rng = np.random.default_rng(seed)
    means = np.array([0.3, 0.5, 0.7])
    logger, target = np.array([0.6, 0.2, 0.2]), np.array([0.1, 0.2, 0.7])
    action = rng.choice(3, size=n, p=logger)
    reward = (rng.random(n) < means[action]).astype(float)
    q_hat = windowed_means(action, reward, 3)
    return (OffPolicyData(reward, logger[action], action, np.tile(target, (n, 1)), q_hat),
            float(target @ means))


def test_estimators_are_unbiased_and_cover_on_a_simulated_bandit():
    estimates = {name: [] for name in ("ips", "snips", "dr", "switch-dr")}
    covered = {name: 0 for name in estimates}
    seeds = 200
    for seed in range(seeds):
        data, truth = simulated_bandit(seed)
        for e in (ips(data), snips(data), dr(data), switch_dr(data)):
            estimates[e.estimator].append(e.value)
            covered[e.estimator] += e.covers(truth)
    truth = 0.62
    for name, values in estimates.items():
        # The mean over 200 seeds is within 3 standard errors of the truth (unbiased)...
        assert abs(np.mean(values) - truth) < 3 * np.std(values) / math.sqrt(seeds), name
        # ... and the 95% intervals cover it (a binomial margin around 95%).
        assert covered[name] / seeds >= 0.90, (name, covered[name])
    # The reward model removes most of the noise of the rewards themselves.
    assert np.var(estimates["dr"]) < 0.6 * np.var(estimates["ips"])


def test_an_ips_without_the_propensity_is_biased_and_caught():
    """Propensities logged wrong (a uniform 1/3 claimed) bias IPS far outside its interval:
    the simulated check fails loudly when the weights are wrong."""
    misses = 0
    for seed in range(20):
        data, truth = simulated_bandit(seed)
        wrong = OffPolicyData(data.reward, np.full(data.n, 1 / 3), data.action,
                              data.target_dist, data.q_hat)
        misses += not ips(wrong).covers(truth)
    assert misses >= 15


# ------------------------------------------------------------------ the log file
def sample_frame(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame({
        "decision_id": [f"d{i}" for i in range(n)],
        "time": np.arange(n, dtype=float),
        "version": ["NA", "v2"] * (n // 2),
        "propensity": [0.5] * n,
        "reward": [1.0, 0.0, np.nan, 1.0, 0.5, 0.0][:n],
        "live": [live_json(["NA", "v2"])] * n,
        "feedback_time": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0][:n],
        "feature:age": [30, 41, 52, 25, 33, 60][:n],
        "feature:city": ["x", "y", None, "x", "y", "z"][:n],
        "reward:v2": [0.0, np.nan, np.nan, 1.0, np.nan, np.nan][:n],
    })


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_log_round_trips_through_parquet_and_csv(tmp_path, suffix):
    frame = sample_frame()
    path = write_log(frame, tmp_path / f"log{suffix}")
    log = read_log(path)
    assert log.frame["version"].tolist() == ["NA", "v2"] * 3  # "NA" stays a version name
    assert log.frame["decision_id"].tolist() == frame["decision_id"].tolist()
    assert np.array_equal(log.frame["reward"].to_numpy(), frame["reward"].to_numpy(),
                          equal_nan=True)
    assert log.features == ["age", "city"] and log.shadow_versions == ["v2"]
    assert log.contexts()[2] == {"age": 52, "city": None}
    assert log.live_sets[0] == ("NA", "v2")


def test_read_log_sorts_by_time_keeping_file_order_for_ties():
    frame = sample_frame()
    frame["time"] = [3.0, 1.0, 1.0, 0.0, 5.0, 4.0]
    frame["feedback_time"] = frame["time"] + 1
    log = validate_log(frame)
    assert log.frame["decision_id"].tolist() == ["d3", "d1", "d2", "d0", "d5", "d4"]


def test_without_a_live_column_a_version_is_live_from_first_to_last_serve():
    frame = sample_frame().drop(columns=["live"])
    frame["version"] = ["a", "a", "b", "a", "b", "b"]
    assert validate_log(frame).live_sets == [("a",), ("a",), ("a", "b"), ("a", "b"),
                                             ("b",), ("b",)]


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.drop(columns=["propensity"]), "missing column.s. propensity"),
    (lambda f: f.assign(propensity=[0.5, 0.0, 0.5, 0.5, 0.5, 0.5]),
     "column 'propensity', row 2: 0 is outside \\(0, 1\\]"),
    (lambda f: f.assign(propensity=[0.5, 0.5, 1.5, 0.5, 0.5, 0.5]),
     "column 'propensity', row 3: 1.5 is outside"),
    (lambda f: f.assign(propensity=[0.5, 0.5, 0.5, np.nan, 0.5, 0.5]),
     "column 'propensity', row 4: missing value"),
    (lambda f: f.assign(time=[0.0, 1.0, np.inf, 3.0, 4.0, 5.0]),
     "column 'time', row 3: inf is not finite"),
    (lambda f: f.assign(reward=[1.0, 1.2, 0.0, 1.0, 0.0, 1.0]),
     "column 'reward', row 2: 1.2 is outside \\[0, 1\\]"),
    (lambda f: f.assign(reward=[1.0, -np.inf, 0.0, 1.0, 0.0, 1.0]),
     "column 'reward', row 2: -inf is not finite"),
    (lambda f: f.assign(reward=["1", "x", "0", "1", "0", "1"]),
     "column 'reward', row 2: 'x' is not a number"),
    (lambda f: f.assign(decision_id=["a", "b", "c", "b", "e", "f"]),
     "column 'decision_id', row 4: duplicate id 'b' \\(first at row 2\\)"),
    (lambda f: f.assign(version=["NA", "v2", "v3", "v2", "NA", "v2"]),
     "column 'live', row 3: the served version 'v3' is not in it"),
    (lambda f: f.assign(live=["[\"NA\",\"v2\"]", "nope", *[live_json(["NA", "v2"])] * 4]),
     "column 'live', row 2: 'nope' is not a JSON list"),
    (lambda f: f.assign(feedback_time=[1.0, 0.5, np.nan, 4.0, 5.0, 6.0]),
     "column 'feedback_time', row 2: feedback before its decision's time"),
    (lambda f: f.assign(**{"reward:v2": [0.0, 2.0, np.nan, 1.0, np.nan, np.nan]}),
     "column 'reward:v2', row 2: 2 is outside"),
    (lambda f: f.assign(version=["NA", "", "NA", "v2", "NA", "v2"]),
     "column 'version', row 2: '' is not a non-empty string"),
])
def test_each_format_error_names_its_column_and_row(tmp_path, change, message):
    frame = change(sample_frame())
    with pytest.raises(LogFormatError, match=message):
        validate_log(frame)
    with pytest.raises(LogFormatError, match=message):
        write_log(frame, tmp_path / "log.parquet")
    assert not (tmp_path / "log.parquet").exists()


def test_a_log_file_with_a_wrong_suffix_or_missing_is_refused(tmp_path):
    with pytest.raises(LogFormatError, match=r"a \.parquet or \.csv file"):
        write_log(sample_frame(), tmp_path / "log.json")
    with pytest.raises(LogFormatError, match="no such file"):
        read_log(tmp_path / "nowhere.csv")
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(LogFormatError, match="cannot read it as parquet"):
        read_log(tmp_path / "broken.parquet")


# ------------------------------------------------------------------ the walk
def uniform_log(rewards: dict[str, float], n: int = 2000, seed: int = 0,
                live: tuple[str, ...] | None = None, delay: int = 0) -> DecisionLogFrame:
    """A uniform logger over ``rewards``' versions (Bernoulli rewards with those means);
    ``live`` may name more versions than are ever served."""
    rng = np.random.default_rng(seed)
    served = list(rewards)
    names = rng.choice(served, size=n)
    shown = live or tuple(served)
    return validate_log(pd.DataFrame({
        "decision_id": [f"d{i}" for i in range(n)], "time": np.arange(n, dtype=float),
        "version": names, "propensity": 1 / len(served),
        "reward": (rng.random(n) < np.array([rewards[v] for v in names])).astype(float),
        "live": live_json(shown), "feedback_time": np.arange(n, dtype=float) + delay}))


def test_the_logging_policy_evaluated_on_its_own_log_earns_its_observed_mean():
    log = uniform_log({"a": 0.3, "b": 0.6, "c": 0.8})
    result = evaluate(log, "uniform")
    observed = log.frame["reward"].mean()
    for e in result.estimates:
        assert e.covers(observed), e
    assert result.estimates[0].value == pytest.approx(observed)  # every weight is exactly 1
    assert result.estimates[0].ess == pytest.approx(len(log))


def test_a_target_that_serves_the_best_version_is_estimated_near_its_value():
    log = uniform_log({"a": 0.3, "b": 0.6, "c": 0.8}, n=6000, delay=20)
    result = evaluate(log, "epsilon-greedy", {"epsilon": 0.0})
    by_name = {e.estimator: e for e in result.estimates}
    # A greedy target learns "c" within a few dozen rewards: its value is about 0.8.
    assert by_name["dr"].ci_low <= 0.8 + 0.01 and by_name["dr"].ci_high >= 0.8 - 0.03
    assert by_name["dr"].value > 0.75
    assert by_name["dr"].ess < len(log) / 2  # it only matches a third of the log


def test_the_support_check_warns_when_the_target_picks_an_unlogged_version():
    log = uniform_log({"a": 0.3, "b": 0.6}, live=("a", "b", "c"))
    result = evaluate(log, "uniform")  # gives "c" a third of every decision
    assert result.support.unlogged == pytest.approx(1 / 3)
    assert result.support.unlogged_versions == ("c",)
    assert any("never served (c)" in w for w in result.warnings)
    assert all(any("never served" in w for w in e.warnings) for e in result.estimates)
    quiet = evaluate(uniform_log({"a": 0.3, "b": 0.6}), "uniform")
    assert quiet.warnings == ()


def test_the_support_check_warns_about_mass_on_versions_a_deterministic_logger_cannot_serve():
    log = uniform_log({"a": 0.3, "b": 0.6})
    frame = log.frame.assign(version="a", propensity=1.0)  # "latest"-like logging: only a
    result = evaluate(validate_log(frame), "uniform")
    assert result.support.unlogged == pytest.approx(0.5)
    assert any("never served" in w for w in result.warnings)


def test_the_targets_guardrail_rolls_back_a_bad_version_and_it_leaves_the_support():
    log = uniform_log({"good": 0.9, "bad": 0.1}, n=1500)
    rail = GuardrailParams(min_samples=30, check_every=1, margin=0.05)
    result = evaluate(log, "thompson", guardrail=rail)
    assert [r["version"] for r in result.rollbacks] == ["bad"]
    from banditops.guardrails import Guardrail
    from banditops.ope.evaluate import target_path
    from banditops.policies import make_policy

    path = target_path(log, make_policy("thompson", seed=0),
                       guardrail=Guardrail.from_params(rail))
    down = int(path.rollbacks[0].time)
    bad = path.versions.index("bad")
    assert (path.dist[down + 1:, bad] == 0).all() and path.dist[:down, bad].max() > 0
    without = evaluate(log, "thompson")
    assert without.rollbacks == []


def test_the_target_learns_a_reward_only_once_its_feedback_has_arrived():
    # a serves rows 0-9 with reward 0 (fed back at once); b serves from row 10 with reward 1,
    # fed back no earlier than time 50.
    n = 80
    frame = pd.DataFrame({
        "decision_id": [f"d{i}" for i in range(n)], "time": np.arange(n, dtype=float),
        "version": ["a"] * 10 + ["b"] * (n - 10), "propensity": 0.5,
        "reward": [0.0] * 10 + [1.0] * (n - 10), "live": live_json(["a", "b"]),
        "feedback_time": [float(max(i, 50)) if i >= 10 else float(i) for i in range(n)]})
    from banditops.ope.evaluate import target_path
    from banditops.policies import make_policy

    path = target_path(validate_log(frame), make_policy("epsilon-greedy", epsilon=0.0,
                                                        cold_start_retry=1000))
    b = path.versions.index("b")
    # The cold start serves a at row 0 and b at row 1; then a (mean 0) is the only arm with
    # a reward, so the greedy target stays on a until b's rewards arrive at time 50: a
    # feedback stamped at a decision's time counts after it, so from row 51 on it is b.
    assert path.dist[:3, b].tolist() == [0.0, 1.0, 0.0]
    assert (path.dist[2:51, b] == 0).all() and (path.dist[51:, b] == 1).all()


class CityRouter(Policy):
    """A stand-in contextual policy (the real ones take a context the same way): the first
    version for requests from city x, an even split elsewhere."""

    contextual = True

    def select(self, context=None):
        return self.choose(context)[0]

    def choose(self, context=None):
        shares = self.probabilities(context)
        return max(shares, key=shares.get), max(shares.values())

    def probabilities(self, context=None):
        if context is not None and context.get("city") == "x":
            return {n: float(i == 0) for i, n in enumerate(self.arms)}
        return dict.fromkeys(self.arms, 1 / len(self.arms))

    def update(self, name, reward, context=None):
        self._require_arm(name)

    def observe(self, name, reward, context=None):
        self._require_arm(name)

    def _stats_state(self):
        return {}

    def _load_stats(self, stats):
        return None


def test_a_contextual_target_gets_each_rows_features_as_a_mapping():
    from banditops.ope.evaluate import target_path

    log = validate_log(sample_frame())
    path = target_path(log, CityRouter())
    first = path.versions.index("NA")  # sample_frame's versions are "NA" and "v2"
    cities = log.frame["feature:city"].tolist()
    assert [row[first] for row in path.dist] == [1.0 if c == "x" else 0.5 for c in cities]
    router = CityRouter()
    seen = []
    original = router.probabilities
    router.probabilities = lambda context=None: seen.append(context) or original(context)
    target_path(log, router)
    assert seen[::2] == log.contexts()  # once for the distribution, once in choose()
    assert seen[0] == {"age": 30, "city": "x"} and seen[4] == {"age": 52, "city": None}


# ------------------------------------------------------------------ the replay's logs
def toy_stream():
    """Labels all 1; v1 right on 80% of rows, v2 (from row 400) on 60%, v3 (from row 800)
    on 90%."""
    n = 3000
    labels = np.ones(n, dtype=int)
    step = np.arange(n) % 10
    predictions = [(step < 8).astype(int), (step < 6).astype(int), (step < 9).astype(int)]
    settings = StreamSettings(400, 20, accuracy, "accuracy", max_live=3)
    releases = [Release(i, f"v{i + 1}", "hand", row, (0, 1), (1, 2), score, False,
                        predictions[i][row:])
                for i, (row, score) in enumerate([(0, 0.8), (400, 0.7), (800, 0.85)])]
    return stream_from_releases("toy", "natural", "hand-made", settings, labels, releases)


@pytest.mark.parametrize("name", ["thompson", "epsilon-greedy", "ab-test",
                                  "thompson-prior+guardrail"])
def test_recorded_replays_are_the_replays_runs(name):
    stream = toy_stream()
    recorded = record_replay(stream, STRATEGIES[name], 3)
    assert np.array_equal(recorded.served, replay(stream, STRATEGIES[name], 3).served)
    assert np.allclose(recorded.dist.sum(axis=1), 1.0)
    chosen = recorded.dist[np.arange(len(recorded.served)), recorded.served]
    assert np.allclose(chosen, recorded.propensity, atol=2e-3)  # Thompson's are Monte Carlo


def test_a_replay_log_evaluated_with_its_own_logger_as_target_matches_its_mean(tmp_path):
    stream = toy_stream()
    run = record_replay(stream, LOGGERS["epsilon-greedy 0.1"], 5)
    path = write_log(replay_log(stream, run).frame, tmp_path / "log.csv")
    log = read_log(path)
    result = evaluate(log, "epsilon-greedy", {"epsilon": 0.1}, seed=11)
    observed = float(log.frame["reward"].mean())
    for e in result.estimates:
        assert e.covers(observed), e
    assert result.estimates[0].value == pytest.approx(observed)  # it learns what the logger did


def test_check_seed_reports_every_estimator_against_the_true_replay_value():
    stream = toy_stream()
    rows = pd.DataFrame(check_seed(stream, 1, learning=True, targets=["latest", "thompson"]))
    assert len(rows) == 3 * 2 * 2 * 4  # loggers x targets x modes x estimators
    own = record_replay(stream, STRATEGIES["latest"], 1)
    latest = rows[(rows["target"] == "latest") & (rows["mode"] == "frozen")]
    assert np.allclose(latest["truth"], path_value(stream, own.dist))
    # "latest" serves v1, then v2 (60%), then v3 (90%): its true value is known exactly.
    expected = (400 * 0.8 + 400 * 0.6 + 2200 * 0.9) / 3000
    assert latest["truth"].iloc[0] == pytest.approx(expected, abs=1e-3)
    dr_rows = rows[rows["estimator"] == "dr"]
    assert (dr_rows["relative_error"] < 0.05).all()


# ------------------------------------------------------------------ the command line
runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, ["evaluate", *args])
    assert "Traceback" not in result.output
    return result


def test_evaluate_prints_every_estimator(tmp_path):
    path = write_log(uniform_log({"a": 0.3, "b": 0.7}).frame, tmp_path / "log.parquet")
    result = run(str(path), "--policy", "ucb1", "--param", "c=0.5")
    assert result.exit_code == 0, result.output
    for name in ("ips", "snips", "dr", "switch-dr"):
        assert name in result.output
    result = run(str(path), "--policy", "thompson", "--estimator", "dr", "--json")
    found = json.loads(result.output)
    assert [e["estimator"] for e in found["estimates"]] == ["dr"]
    assert found["feedbacks"] == 2000


def test_evaluate_says_when_the_targets_guardrail_rolled_back_nothing(tmp_path):
    same = write_log(uniform_log({"a": 0.7, "b": 0.7}).frame, tmp_path / "same.parquet")
    result = run(str(same), "--policy", "thompson", "--guardrail", "margin=0.05")
    assert "the target's guardrail rolled back nothing" in result.output, result.output
    assert "rolled back nothing" not in run(str(same), "--policy", "thompson").output
    apart = write_log(uniform_log({"a": 0.1, "b": 0.9}).frame, tmp_path / "apart.parquet")
    result = run(str(apart), "--policy", "thompson", "--guardrail", "min_samples=30")
    assert "the target's guardrail rolled back a" in result.output, result.output
    assert "rolled back nothing" not in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["nowhere.parquet"], "no such file"),
    (["LOG", "--policy", "nonsense"], "unknown policy 'nonsense'"),
    (["LOG", "--policy", "ucb1", "--param", "c=-1"], "c must be in"),
    (["LOG", "--policy", "ucb1", "--param", "window=3"], "unknown parameter 'window'"),
    (["LOG", "--param", "c"], "--param takes NAME=VALUE"),
    (["LOG", "--estimator", "magic"], "unknown estimator 'magic'"),
    (["LOG", "--guardrail", "speed=3"], "unknown setting 'speed'"),
    (["LOG", "--guardrail", "margin=2"], "margin must be in"),
    (["LOG", "--learn", "sometimes"], "--learn must be one of"),
    (["--db", "sqlite:///x.db"], "--db needs --deployment"),
    ([], "give a decision log file"),
    (["BAD"], "column 'propensity', row 1: 2 is outside"),
])
def test_evaluate_mistakes_are_one_error_line(tmp_path, args, message):
    good = write_log(uniform_log({"a": 0.3, "b": 0.7}, n=50).frame, tmp_path / "log.csv")
    bad = tmp_path / "bad.csv"
    pd.read_csv(good).assign(propensity=2.0).to_csv(bad, index=False)
    args = [str(good) if a == "LOG" else str(bad) if a == "BAD" else a for a in args]
    result = run(*args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0]


def test_evaluate_check_summarises_saved_runs_against_the_goals(tmp_path):
    rows = pd.DataFrame(check_seed(toy_stream(), 2, learning=True, targets=["latest", "ucb1"]))
    rows.to_csv(tmp_path / "runs.csv", index=False)
    result = runner.invoke(app, ["evaluate-check", "--from-runs", str(tmp_path / "runs.csv"),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "learning-path bias" in result.output
    assert "note: 1 seed: a smoke test" in result.output
    summary = pd.read_csv(tmp_path / "out" / "ope_summary.csv")
    assert len(summary) == 3 * 2 * 4  # loggers x modes x estimators
    verdicts = json.loads((tmp_path / "out" / "ope_summary.json").read_text())["verdicts"]
    assert set(verdicts) == {"frozen", "learning"} and set(verdicts["frozen"]) == set(LOGGERS)
    bad = runner.invoke(app, ["evaluate-check", "--from-runs", str(tmp_path / "none.csv"),
                              "--out", str(tmp_path / "out")])
    assert bad.exit_code == 2 and bad.output.startswith("error: --from-runs")


def test_evaluate_check_says_how_many_rows_it_needs_before_training(data_dir, tmp_path):
    result = runner.invoke(app, ["evaluate-check", "--dataset", "adult", "--rows", "1000",
                                 "--seeds", "1", "--out", str(tmp_path / "out"),
                                 "--data-dir", str(data_dir)])
    assert result.exit_code == 2, result.output
    assert "error: --rows 1,000 is too few for adult" in result.output
    assert "(--rows 4,000;" in result.output and "training" not in result.output


def test_a_contextual_target_needs_the_features_it_names_in_the_log(tmp_path):
    log = uniform_log({"a": 0.3, "b": 0.7}, n=50)
    path = write_log(log.frame.assign(**{"feature:age": 30.0}), tmp_path / "log.csv")
    result = run(str(path), "--policy", "linear-thompson", "--param", 'features=["agee"]')
    assert result.exit_code == 2 and "feature 'agee' of the target is not in the log; its " \
        "features: age" in result.output, result.output
    assert run(str(path), "--policy", "linucb", "--param", 'features=["age"]').exit_code == 0
    bare = write_log(log.frame, tmp_path / "bare.csv")
    result = run(str(bare), "--policy", "linucb")
    assert result.exit_code == 2 and "the log has no feature: columns" in result.output


def test_a_csv_log_is_safe_to_open_in_a_spreadsheet_and_round_trips(tmp_path):
    frame = sample_frame()
    frame["feature:city"] = ["=cmd|' /C calc'!A0", "-2+3", "'@x", "\rsplit", "@SUM(A1)",
                             "'plain"]
    path = write_log(frame, tmp_path / "log.csv")
    rows = list(csv.reader(path.open(newline="", encoding="utf-8")))[1:]
    column = list(frame.columns).index("feature:city")
    assert len(rows) == 6
    assert all(row[column].startswith("'") for row in rows[:5])
    assert read_log(path).frame["feature:city"].tolist() == frame["feature:city"].tolist()
    frame["feature:city"] = ["None", "null", "NA", "nan", None, "x"]  # texts, not nulls
    cities = [c["city"] for c in read_log(write_log(frame, tmp_path / "na.csv")).contexts()]
    assert cities == ["None", "null", "NA", "nan", None, "x"]


@pytest.mark.parametrize(("column", "value", "message"), [
    ("propensity", 5e-324, r"column 'propensity', row 2: 4.94066e-324 is below 1e-100"),
    ("propensity", 1e-300, r"column 'propensity', row 2: 1e-300 is below 1e-100"),
    ("live", "[" * 100_000, r"column 'live', row 2: '\[\[\[.* is not a JSON list")])
def test_a_hostile_log_is_one_format_error_never_a_nan_estimate_or_a_crash(column, value,
                                                                          message):
    frame = sample_frame().astype({column: object})
    frame.loc[1, column] = value
    with pytest.raises(LogFormatError, match=message):
        validate_log(frame)
