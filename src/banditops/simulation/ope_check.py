"""Validate off-policy evaluation in the replay, the way Open Bandit Pipeline validates it.

On every (dataset, scenario) stream of the default grid and for every seed:

1. a LOGGING strategy (``uniform``, epsilon-greedy at epsilon 0.1, and the more exploratory
   epsilon 0.3) is replayed through the real Deployment, and its traffic exported as a
   decision log (:func:`replay_log`, the format of :mod:`banditops.ope.logfile`);
2. every TARGET strategy (the study's six and the recommended one) is replayed on the same
   stream with the same seed, recording its distribution over the live versions at every
   request. Its TRUE value is the mean over rows of sum_a pi_t(a) r_t(a): the reward it
   expected given its own propensities, every version's reward on every row being known
   in the replay (``stream.rewards``). The expected rather than the realised reward: it is
   what every estimator estimates, and it leaves out the noise of the target's own coin
   flips, which no log of another policy can know;
3. the target's value is estimated from the log in two ways:

   - ``frozen``: the target's distributions of its own replay, fixed in advance, as Open
     Bandit Pipeline evaluates a fixed ``action_dist``. The estimand is exactly the true
     value above, so this checks the estimators;
   - ``learning``: what ``banditops evaluate`` does: the target walks the log, learning from
     the logged feedback (:func:`banditops.ope.evaluate.target_path`). Its path differs from
     its own replay's (it learns what the logger explored); the counterfactual truth of that
     path is computed too (``truth_learning``), so the error splits into the estimator's and
     the learning path's.

Streams are built once and shared by every seed (training the versions is the expensive
part); the learning walks, which cost a replay each, run on the first ``learning_seeds``
seeds only.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from banditops.ope.estimators import ESTIMATORS, Estimate
from banditops.ope.evaluate import TargetPath, estimate_path, log_arrays, target_path
from banditops.ope.logfile import FEATURE, DecisionLogFrame, live_json, write_log
from banditops.ope.reward_model import windowed_means
from banditops.simulation.replay import _release, _RowModel
from banditops.simulation.strategies import RECOMMENDED, STRATEGIES, STUDY, Strategy
from banditops.simulation.stream import Stream

LOGGERS: dict[str, Strategy] = {
    "uniform": Strategy("uniform", "logging", "uniform"),
    "epsilon-greedy 0.1": Strategy("epsilon-greedy 0.1", "logging", "epsilon-greedy",
                                   {"epsilon": 0.1}),
    "epsilon-greedy 0.3": Strategy("epsilon-greedy 0.3", "logging", "epsilon-greedy",
                                   {"epsilon": 0.3}),
}
TARGETS = [*STUDY, RECOMMENDED]
MODES = ("frozen", "learning")
GOAL_ERROR = 0.05
GOAL_COVERAGE = 0.90


@dataclass(frozen=True)
class RecordedRun:
    """One strategy's replay with what a log needs: per served row (from ``stream.start``)
    the version index, its propensity, the live versions and the full distribution."""

    strategy: str
    seed: int
    served: np.ndarray  # (rows,) version index
    propensity: np.ndarray  # (rows,)
    dist: np.ndarray  # (rows, versions): pi_t(a), 0 where not live
    live: list[str]  # (rows,) JSON list of the live versions

    def expected_value(self, stream: Stream) -> float:
        """Mean over rows of sum_a pi_t(a) r_t(a) (the true value)."""
        return path_value(stream, self.dist)

    def realised_value(self, stream: Stream) -> float:
        rows = np.arange(stream.start, stream.n)
        return float(np.mean(stream.rewards[self.served, rows]))


def path_value(stream: Stream, dist: np.ndarray) -> float:
    """Mean over served rows of sum_a dist[t, a] r_t(a) (versions in stream order)."""
    rewards = np.nan_to_num(stream.rewards[:, stream.start:].T, nan=0.0)
    return float(np.mean(np.einsum("ij,ij->i", dist, rewards)))


def record_replay(stream: Stream, strategy: Strategy, seed: int) -> RecordedRun:
    """Replay ``strategy`` as :func:`banditops.simulation.replay.replay` does (request
    granularity, the same runs), recording its distribution before every decision."""
    n, delay = stream.n, stream.settings.delay
    setup = strategy.build(seed, margin=stream.settings.guardrail_margin)
    labels = stream.labels.tolist()
    clock = [0]
    deployment = setup.deployment(stream.settings.reward, max_pending=max(delay + 1, 1000),
                                  clock=lambda: float(clock[0]))
    index = {v.name: i for i, v in enumerate(stream.versions)}
    releases = {v.row: i for i, v in enumerate(stream.versions)}
    rows = n - stream.start
    shares: list[dict[str, float]] = []
    served: list[str] = []
    propensity: list[float] = []
    live_text: list[str] = []
    text, previous = "", None
    in_flight: list[tuple[str, int]] = []
    first = 0
    predict, feedback = deployment.predict, deployment.feedback
    for row in range(stream.start, n):
        if row in releases:
            clock[0] = row
            r = releases[row]
            _release(deployment, stream, r, _RowModel(stream.predictions[r]))
        shares.append(deployment.policy.probabilities())
        live = deployment.live_versions
        if live != previous:
            text, previous = live_json(live), live
        live_text.append(text)
        decision = predict(row)
        served.append(decision.version)
        propensity.append(decision.propensity)
        in_flight.append((decision.id, row))
        if len(in_flight) - first > delay:
            decision_id, labelled = in_flight[first]
            first += 1
            clock[0] = row
            feedback(decision_id, labels[labelled])
    dist = np.zeros((rows, len(stream.versions)))
    for position, row_shares in enumerate(shares):
        for name, share in row_shares.items():
            if share:
                dist[position, index[name]] = share
    return RecordedRun(strategy.name, seed, np.array([index[v] for v in served]),
                       np.array(propensity), dist, live_text)


def replay_log(stream: Stream, run: RecordedRun, *, features: bool = False) -> DecisionLogFrame:
    """The decision log of a recorded run: one row per request, ``time`` the row number,
    the reward the served version earned, ``feedback_time`` the row at which its label
    arrived (``delay`` rows later; the last rows' labels arrive after the stream ends).
    ``features=True`` adds the stream's ``feature:`` columns (for an export)."""
    rows = np.arange(stream.start, stream.n)
    names = np.array([v.name for v in stream.versions], dtype=object)
    scores = np.array([v.validation_score for v in stream.versions])
    frame = pd.DataFrame({
        "decision_id": [f"{run.strategy}-{run.seed}-{row}" for row in rows],
        "time": rows.astype(float),
        "version": names[run.served],
        "propensity": run.propensity,
        "reward": stream.rewards[run.served, rows],
        "live": run.live,
        "feedback_time": (rows + stream.settings.delay).astype(float),
        "validation_score": scores[run.served],
    })
    if features and stream.features is not None:
        extra = stream.features.iloc[stream.start:].reset_index(drop=True)
        frame = pd.concat([frame, extra.add_prefix(FEATURE)], axis=1)
    parsed: dict[str, tuple[str, ...]] = {}
    live_sets = [parsed[t] if t in parsed else parsed.setdefault(t, tuple(json.loads(t)))
                 for t in run.live]
    return DecisionLogFrame.trusted(frame, f"replay of {run.strategy}", live_sets)


def _estimates_row(base: dict[str, Any], found: list[Estimate], truth: float,
                   truth_learning: float | None) -> list[dict[str, Any]]:
    rows = []
    for e in found:
        row = {**base, "estimator": e.estimator, "value": e.value, "se": e.se,
               "ci_low": e.ci_low, "ci_high": e.ci_high, "ess": e.ess, "n": e.n,
               "truth": truth, "error": e.value - truth,
               "relative_error": abs(e.value - truth) / abs(truth) if truth else math.nan,
               "covered": bool(e.ci_low <= truth <= e.ci_high),
               "warnings": " | ".join(e.warnings)}
        if truth_learning is not None:
            row.update({"truth_learning": truth_learning,
                        "covered_learning": bool(e.ci_low <= truth_learning <= e.ci_high)})
        rows.append(row)
    return rows


def check_seed(stream: Stream, seed: int, *, learning: bool,
               targets: list[str] = TARGETS, loggers: list[str] | None = None,
               own: dict[str, RecordedRun] | None = None, frozen: bool = True
               ) -> list[dict[str, Any]]:
    """Every (logger, target, mode, estimator) row of one stream and seed: the ``frozen``
    mode when ``frozen``, the ``learning`` mode when ``learning``."""
    own = dict(own or {})
    names = [v.name for v in stream.versions]
    for target in targets:
        if target not in own:
            own[target] = record_replay(stream, STRATEGIES[target], seed)
    results: list[dict[str, Any]] = []
    for logger in loggers or list(LOGGERS):
        run = record_replay(stream, LOGGERS[logger], seed)
        log = replay_log(stream, run)
        action, _, reward, _ = log_arrays(log, names)
        q_hat = windowed_means(action, reward, len(names))
        logged = float(np.nanmean(reward))
        for target in targets:
            truth = own[target].expected_value(stream)
            base = {"dataset": stream.dataset, "scenario": stream.scenario, "seed": seed,
                    "logger": logger, "target": target, "logged_mean": logged,
                    "realised": own[target].realised_value(stream)}
            if frozen:
                found, _ = estimate_path(log, TargetPath(own[target].dist, names),
                                         q_hat=q_hat)
                results += _estimates_row({**base, "mode": "frozen"}, found, truth, None)
            if learning:
                setup = STRATEGIES[target].build(seed, margin=stream.settings.guardrail_margin)
                path = target_path(log, setup.policy, guardrail=setup.guardrail)
                found, _ = estimate_path(log, path, q_hat=q_hat)
                results += _estimates_row({**base, "mode": "learning"}, found, truth,
                                          path_value(stream, path.dist))
    return results


def fixed_runs(stream: Stream, targets: list[str] = TARGETS) -> dict[str, RecordedRun]:
    """The targets whose replay is the same for every seed, replayed once."""
    return {t: record_replay(stream, STRATEGIES[t], 0) for t in targets
            if not STRATEGIES[t].seeded}


# ------------------------------------------------------------------ the run
CheckTask = tuple[tuple[str, str], int, str]  # stream key, seed, mode


def _check_task(task: CheckTask) -> list[dict[str, Any]]:
    from banditops.simulation.experiment import _STREAMS

    key, seed, mode = task
    stream, own = _STREAMS[key]
    return check_seed(stream, seed, learning=mode == "learning", frozen=mode == "frozen",
                      own=own)


@dataclass
class CheckResult:
    runs: pd.DataFrame
    summary: pd.DataFrame
    targets: pd.DataFrame
    seconds: dict[str, float]
    skipped: dict[tuple[str, str], str]
    streams: dict[tuple[str, str], Stream]


def run_check(datasets: list, *, scenarios: list[str] | None = None, seeds: int = 100,
              learning_seeds: int = 10, workers: int = 2, progress: Progress | None = None,
              checkpoint: Callable[[pd.DataFrame], None] | None = None) -> CheckResult:
    """Build every stream once, then check every seed in the frozen mode, then the first
    ``learning_seeds`` in the learning mode (module docstring). ``checkpoint`` receives the
    frozen runs before the learning phase starts (so a long run keeps them if stopped)."""
    from banditops.simulation.experiment import (
        LocalEngine,
        Skipped,
        _map,
        check_choices,
    )

    scenarios, _ = check_choices(scenarios, None, "request", seeds)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    engine = LocalEngine(workers)
    built = engine.build([(data, scenario, settings, 0) for data, settings in datasets
                          for scenario in scenarios], progress)
    skipped = {(s.dataset, s.scenario): s.reason for s in built if isinstance(s, Skipped)}
    streams = {(s.dataset, s.scenario): s for s in built if isinstance(s, Stream)}
    seconds["training (wall)"] = seconds_since(started)
    started = time.perf_counter()
    payload = {key: (stream, fixed_runs(stream)) for key, stream in streams.items()}
    tasks: list[CheckTask] = [(key, seed, "frozen") for seed in range(seeds) for key in streams]
    outputs = _map(_check_task, tasks, workers, payload, "frozen", progress)
    seconds["frozen (wall)"] = seconds_since(started)
    if checkpoint is not None:
        checkpoint(pd.DataFrame([row for rows in outputs for row in rows]))
    started = time.perf_counter()
    tasks = [(key, seed, "learning") for seed in range(learning_seeds) for key in streams]
    if tasks:
        outputs += _map(_check_task, tasks, workers, payload, "learning", progress)
    seconds["learning (wall)"] = seconds_since(started)
    runs = pd.DataFrame([row for rows in outputs for row in rows])
    return CheckResult(runs, summarise(runs), by_target(runs), seconds, skipped, streams)


# ------------------------------------------------------------------ summary
def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (logger, mode, estimator): median relative error, coverage of the true value,
    over every (stream, target, seed); and the worst (stream, target) cell's coverage."""
    rows = []
    for (logger, mode, estimator), group in runs.groupby(["logger", "mode", "estimator"],
                                                         sort=False):
        cells = group.groupby(["dataset", "scenario", "target"])["covered"].mean()
        row = {"logger": logger, "mode": mode, "estimator": estimator,
               "seeds": int(group["seed"].nunique()),
               "median_relative_error": float(group["relative_error"].median()),
               "p90_relative_error": float(group["relative_error"].quantile(0.9)),
               "mean_abs_error": float(group["error"].abs().mean()),
               "coverage": float(group["covered"].mean()),
               "worst_cell_coverage": float(cells.min()),
               "cells_90": float((cells >= GOAL_COVERAGE).mean()),
               "mean_ci_width": float((group["ci_high"] - group["ci_low"]).mean()),
               "mean_ess_share": float((group["ess"] / group["n"]).mean())}
        if mode == "learning":
            row["coverage_of_learning_truth"] = float(group["covered_learning"].mean())
            row["learning_path_bias"] = float(
                (group["truth_learning"] - group["truth"]).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def by_target(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (logger, mode, estimator, target): the same, and the learning path's bias."""
    rows = []
    for key, group in runs.groupby(["logger", "mode", "estimator", "target"], sort=False):
        row = dict(zip(["logger", "mode", "estimator", "target"], key, strict=True))
        row.update({"median_relative_error": float(group["relative_error"].median()),
                    "coverage": float(group["covered"].mean()),
                    "mean_error": float(group["error"].mean()),
                    "mean_truth": float(group["truth"].mean())})
        if "truth_learning" in group and group["truth_learning"].notna().any():
            row["learning_path_bias"] = float((group["truth_learning"] - group["truth"]).mean())
        rows.append(row)
    return pd.DataFrame(rows)


Progress = Callable[[str, int, int], None]


def goal_met(summary: pd.DataFrame, mode: str) -> dict[str, Any]:
    """For each logger: the best estimator (lowest median error among those whose
    coverage meets the goal, else lowest median error) and whether both goals hold."""
    verdicts = {}
    for logger, group in summary[summary["mode"] == mode].groupby("logger", sort=False):
        covering = group[group["coverage"] >= GOAL_COVERAGE]
        pool = covering if not covering.empty else group
        best = pool.sort_values("median_relative_error").iloc[0]
        verdicts[logger] = {
            "estimator": best["estimator"], "median_relative_error":
            best["median_relative_error"], "coverage": best["coverage"],
            "met": bool(best["median_relative_error"] <= GOAL_ERROR
                        and best["coverage"] >= GOAL_COVERAGE)}
    return verdicts


def seconds_since(started: float) -> float:
    return time.perf_counter() - started


def write_check(runs: pd.DataFrame, summary: pd.DataFrame, targets: pd.DataFrame,
                meta: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "ope_runs.csv", out / "ope_summary.csv", out / "ope_by_target.csv",
             out / "ope_summary.json"]
    runs.to_csv(paths[0], index=False)
    summary.to_csv(paths[1], index=False)
    targets.to_csv(paths[2], index=False)
    paths[3].write_text(json.dumps({**meta, "summary": summary.to_dict(orient="records")},
                                   indent=2, default=float))
    return paths


def export_sample_logs(streams: dict[tuple[str, str], Stream], out: Path,
                       loggers: list[str] | None = None) -> list[Path]:
    """Seed 0 of every logger on every stream, as Parquet with the request features."""
    paths = []
    for (dataset, scenario), stream in streams.items():
        for logger in loggers or list(LOGGERS):
            run = record_replay(stream, LOGGERS[logger], 0)
            name = f"{dataset}-{scenario}-{logger.replace(' ', '-')}-seed0.parquet"
            paths.append(write_log(replay_log(stream, run, features=True).frame,
                                   out / name))
    return paths


__all__ = ["ESTIMATORS", "LOGGERS", "MODES", "TARGETS", "check_seed", "record_replay",
           "replay_log"]
