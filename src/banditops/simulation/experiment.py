"""The replay experiment: every strategy over every (dataset, scenario), over several seeds.

Two phases, each spread over ``workers`` processes (or over a Ray cluster, ``engine="ray"``:
:mod:`~banditops.simulation.ray_engine`): first the training pipeline builds each
(dataset, scenario) stream once (:mod:`~banditops.simulation.stream`); then every
(stream, strategy, seed) is replayed (:mod:`~banditops.simulation.replay`) and scored
(:mod:`~banditops.simulation.metrics`). Both engines run the same tasks, one thread each, so
they give the same runs. The seed drives the strategies' randomness; the
versions, and so the oracle, are the same for every strategy and seed. A strategy that has
no randomness (a deterministic policy, no shadow sampling: ``Strategy.seeded`` is false)
gives the same run for every seed, so it is replayed once and that run counts for every
seed (its interval has zero width either way).

The defaults per dataset (chunking, label delay, reward) are in
:mod:`~banditops.simulation.settings`. A scenario a table cannot support
(:class:`~banditops.simulation.scenarios.ScenarioNotApplicable`) is skipped with its reason
(``ExperimentResult.skipped``); the other streams run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

import numpy as np
import pandas as pd

from banditops.errors import BanditOpsError, InvalidParameterError
from banditops.simulation.datasets import Dataset
from banditops.simulation.metrics import evaluate, mean_interval
from banditops.simulation.replay import replay
from banditops.simulation.scenarios import SCENARIOS, ScenarioNotApplicable
from banditops.simulation.strategies import (
    GRANULARITIES,
    RECOMMENDED,
    STRATEGIES,
    STUDY,
    resolve_strategies,
)
from banditops.simulation.stream import Stream, StreamSettings, VersionInfo, prepare_stream

Progress = Callable[[str, int, int], None]  # (phase, done, total)
BuildTask = tuple[Dataset, str, StreamSettings, int]  # dataset, scenario, settings, seed
RunTask = tuple[tuple[str, str], str, int, str, bool]  # stream key, strategy, seed,
# granularity, keep the traffic series
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class StreamInfo:
    """What the report needs of a stream, without its row arrays."""

    dataset: str
    scenario: str
    description: str
    reward_name: str
    n: int
    start: int
    chunk_bounds: list[tuple[int, int]]
    versions: list[VersionInfo]
    oracle_chunks: np.ndarray
    settings: StreamSettings | None = None
    driver: str | None = None
    segment: str | None = None
    drift_at: int | None = None
    faulty_every: int | None = None
    request_oracle_reward: float = float("nan")  # per request, the per-request oracle's
    features: dict[str, str] = field(default_factory=dict)  # name -> "numeric" | "categorical"

    @classmethod
    def of(cls, stream: Stream) -> StreamInfo:
        features = {} if stream.features is None else {
            str(name): ("numeric" if pd.api.types.is_numeric_dtype(column)
                        and not pd.api.types.is_bool_dtype(column) else "categorical")
            for name, column in stream.features.items()}
        return cls(stream.dataset, stream.scenario, stream.description,
                   stream.settings.reward_name, stream.n, stream.start, stream.chunk_bounds(),
                   stream.versions, stream.oracle_chunk_rewards(), stream.settings,
                   stream.driver, stream.segment, stream.drift_at, stream.faulty_every,
                   float(stream.oracle_request_rewards().mean()), features)


@dataclass(frozen=True)
class DatasetInfo:
    """What the report says of a dataset: where it comes from, its order and classes."""

    name: str
    description: str
    rows: int
    order: str
    classes: tuple[str, ...]
    class_text: str  # "2,128 positive ('fraud', 6.0%)" or "7 classes (largest ...)"
    kinds: dict[str, str]
    settings: StreamSettings

    @classmethod
    def of(cls, data: Dataset, settings: StreamSettings) -> DatasetInfo:
        return cls(data.name, data.description, len(data), data.order, data.classes,
                   data.describe_classes(), dict(data.kinds), settings)


@dataclass
class ExperimentResult:
    runs: pd.DataFrame  # one row per (dataset, scenario, strategy, seed)
    summary: pd.DataFrame  # one row per (dataset, scenario, strategy)
    streams: dict[tuple[str, str], StreamInfo]
    reward_chunks: dict[tuple[str, str, str], np.ndarray]  # mean over seeds, per chunk
    traffic: dict[tuple[str, str], tuple[np.ndarray, list[tuple[int, int]]]]  # plot strategy
    plot_strategy: str
    granularity: str
    seconds: dict[str, float] = field(default_factory=dict)
    datasets: dict[str, DatasetInfo] = field(default_factory=dict)
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)  # reason per stream
    warnings: list[str] = field(default_factory=list)  # what the reader should know first


# Worker processes receive the streams once, when they start.
_STREAMS: dict[tuple[str, str], Stream] = {}


def _start_worker(streams: dict[tuple[str, str], Stream]) -> None:
    """Receive the streams; one thread per process (two pools of OpenMP threads on two
    cores made training four times slower)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    _STREAMS.update(streams)


@dataclass(frozen=True)
class Skipped:
    """A (dataset, scenario) the table cannot support, and why."""

    dataset: str
    scenario: str
    reason: str


def build_stream(task: BuildTask) -> Stream | Skipped:
    """A training-phase task: one (dataset, scenario) stream, or why the table cannot have
    it."""
    dataset, scenario, settings, seed = task
    try:
        return prepare_stream(dataset.name, dataset.features, dataset.labels.to_numpy(),
                              scenario, settings, seed=seed, classes=len(dataset.classes),
                              dates=frozenset(c for c, k in dataset.kinds.items() if k == "date"))
    except ScenarioNotApplicable as reason:
        return Skipped(dataset.name, scenario, str(reason))


def replay_task(stream: Stream, task: RunTask) -> dict:
    """A replay-phase task: one (strategy, seed) over ``stream``, scored."""
    key, strategy, seed, granularity, keep_traffic = task
    started = time.perf_counter()
    result = replay(stream, STRATEGIES[strategy], seed, granularity)
    metrics, series = evaluate(stream, result)
    return {"key": key, "strategy": strategy, "seed": seed, "metrics": metrics.as_dict(),
            "reward_chunks": series.reward,
            "traffic": (series.counts, result.rollbacks) if keep_traffic else None,
            "seconds": time.perf_counter() - started, "requests": stream.n - stream.start}


def _run(task: RunTask) -> dict:
    return replay_task(_STREAMS[task[0]], task)


def _pool(workers: int, streams: dict | None = None):
    import multiprocessing

    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=_start_worker, initargs=(streams or {},))


def _map(function, tasks: list, workers: int, streams: dict | None, phase: str,
         progress: Progress | None):
    """Results in task order, reporting progress as tasks finish."""
    if progress:
        progress(phase, 0, len(tasks))
    if workers <= 1:
        from threadpoolctl import threadpool_limits

        _STREAMS.update(streams or {})
        results = []
        with threadpool_limits(1):  # as in a worker process: the same runs, bit for bit
            for done, task in enumerate(tasks, 1):
                results.append(function(task))
                if progress:
                    progress(phase, done, len(tasks))
        return results
    with _pool(workers, streams) as pool:
        results = []
        for done, result in enumerate(pool.map(function, tasks, chunksize=1), 1):
            results.append(result)
            if progress:
                progress(phase, done, len(tasks))
        return results


class Engine(Protocol):
    """Where the two phases run: ``with engine: build(...); replay(...)``."""

    def __enter__(self) -> Engine: ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None: ...

    def build(self, tasks: list[BuildTask], progress: Progress | None
              ) -> list[Stream | Skipped]:
        """The outputs of :func:`build_stream`, in task order."""
        ...

    def replay(self, streams: dict[tuple[str, str], Stream], tasks: list[RunTask],
               progress: Progress | None) -> list[dict]:
        """The outputs of :func:`replay_task`, in task order."""
        ...


class LocalEngine:
    """``workers`` processes on this machine (forked, the streams inherited, not copied), or
    this process alone when ``workers`` is 1."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def build(self, tasks: list[BuildTask], progress: Progress | None
              ) -> list[Stream | Skipped]:
        return _map(build_stream, tasks, self.workers, None, "training", progress)

    def replay(self, streams: dict[tuple[str, str], Stream], tasks: list[RunTask],
               progress: Progress | None) -> list[dict]:
        return _map(_run, tasks, self.workers, streams, "replaying", progress)


def check_engine(engine: str, address: str | None) -> None:
    """Engine options, checked before any data is loaded: Ray must be installed, and
    something must answer at ``address``."""
    if engine not in ENGINES:
        raise InvalidParameterError(f"engine must be one of {', '.join(ENGINES)}, "
                                    f"got {engine!r}")
    if address is not None and engine != "ray":
        raise InvalidParameterError("--address goes with --engine ray")
    if engine == "ray":
        try:
            from banditops.simulation import ray_engine
        except ModuleNotFoundError as error:
            if (error.name or "").split(".")[0] != "ray":
                raise
            raise BanditOpsError("--engine ray needs Ray, an optional dependency: "
                                 "pip install 'banditops[ray]'") from None
        if address is not None:
            ray_engine.check_address(address)


def open_engine(engine: str, workers: int, address: str | None = None) -> Engine:
    """The engine named ``engine``, to use in a ``with`` block (the options already passed
    :func:`check_engine`: with an address, that check connects to the cluster)."""
    if engine == "ray":
        from banditops.simulation.ray_engine import RayEngine

        return RayEngine(workers, address)
    return LocalEngine(workers)


def _for_every_seed(outputs: list[dict], seeds: int) -> list[dict]:
    """The run of a strategy that does not depend on the seed, counted for every seed."""
    full = []
    for output in outputs:
        full.append(output)
        if not STRATEGIES[output["strategy"]].seeded:
            full += [{**output, "seed": seed, "traffic": None} for seed in range(1, seeds)]
    return full


def check_choices(scenarios: list[str] | None, strategies: list[str] | None,
                  granularity: str, seeds: int) -> tuple[list[str], list[str]]:
    """The scenarios and strategy names a run will use, or the error that names a mistake
    (checked before any data is loaded, so a typo costs nothing)."""
    scenarios = list(dict.fromkeys(scenarios or SCENARIOS))
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise InvalidParameterError(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    if granularity not in GRANULARITIES:
        raise InvalidParameterError(
            f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
    if not isinstance(seeds, int) or seeds < 1:
        raise InvalidParameterError(f"seeds must be a positive integer, got {seeds}")
    chosen = resolve_strategies(strategies)
    if granularity == "chunk" and all(s.contextual for s in chosen):
        raise InvalidParameterError(
            "contextual strategies route each request on its features: they need "
            "--granularity request (a chunk is one decision)")
    return scenarios, [s.name for s in chosen]


def contextual_left_out(chosen: list[str], granularity: str) -> list[str]:
    """The contextual strategies a run at this granularity leaves out (chunk: all)."""
    return [n for n in chosen if STRATEGIES[n].contextual] if granularity == "chunk" else []


def run_experiment(datasets: list[tuple[Dataset, StreamSettings]], *,
                   scenarios: list[str] | None = None, strategies: list[str] | None = None,
                   seeds: int = 5, granularity: str = "request", workers: int = 2,
                   plot_strategy: str = RECOMMENDED, progress: Progress | None = None,
                   engine: str = "local", address: str | None = None) -> ExperimentResult:
    """Build every stream, replay every strategy on it ``seeds`` times, and summarise.

    ``engine="ray"`` runs the tasks on Ray: a local Ray of ``workers`` CPUs, or the cluster
    at ``address`` (all its CPUs)."""
    scenarios, chosen = check_choices(scenarios, strategies, granularity, seeds)
    check_engine(engine, address)
    left_out = contextual_left_out(chosen, granularity)
    chosen = [n for n in chosen if n not in left_out]
    warnings = ([f"contextual strategies left out at chunk granularity ({', '.join(left_out)}): "
                 "they route each request on its features, and a chunk is one decision"]
                if left_out else [])
    if not datasets:
        raise InvalidParameterError("no dataset to replay")
    if plot_strategy not in chosen:
        plot_strategy = chosen[0]
    workers = max(1, min(workers, os.cpu_count() or 1))
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    with open_engine(engine, workers, address) as runner:
        seconds["engine start (wall)"] = time.perf_counter() - started  # Ray's start-up
        started = time.perf_counter()
        build_tasks: list[BuildTask] = [(data, scenario, settings, 0)
                                        for data, settings in datasets for scenario in scenarios]
        built = runner.build(build_tasks, progress)
        skipped = {(s.dataset, s.scenario): s.reason for s in built if isinstance(s, Skipped)}
        streams = {(s.dataset, s.scenario): s for s in built if isinstance(s, Stream)}
        if not streams:
            raise ScenarioNotApplicable("no scenario could be replayed: " + "; ".join(
                f"{d} / {s}: {reason}" for (d, s), reason in skipped.items()))
        seconds["training (wall)"] = time.perf_counter() - started
        seconds["fitting versions (cpu, summed)"] = sum(s.fit_seconds for s in streams.values())
        seconds["predicting once per version (cpu, summed)"] = sum(
            s.predict_seconds for s in streams.values())

        started = time.perf_counter()
        run_tasks: list[RunTask] = [
            (key, strategy, seed, granularity, seed == 0 and strategy == plot_strategy)
            for key in streams for strategy in chosen for seed in range(seeds)
            if seed == 0 or STRATEGIES[strategy].seeded]
        outputs = runner.replay(streams, run_tasks, progress)
        seconds["replay (wall)"] = time.perf_counter() - started
    seconds["replay (cpu, summed)"] = sum(o["seconds"] for o in outputs)
    seconds["requests replayed"] = float(sum(o["requests"] for o in outputs))
    outputs = _for_every_seed(outputs, seeds)

    rows, reward_chunks, traffic = [], {}, {}
    for output in outputs:
        dataset, scenario = output["key"]
        strategy = STRATEGIES[output["strategy"]]
        rows.append({"dataset": dataset, "scenario": scenario, "strategy": strategy.name,
                     "group": strategy.group, "feedback": strategy.feedback,
                     "seed": output["seed"], **output["metrics"]})
        reward_chunks.setdefault((dataset, scenario, output["strategy"]), []).append(
            output["reward_chunks"])
        if output["traffic"] is not None:
            traffic[output["key"]] = output["traffic"]
    runs = pd.DataFrame(rows)
    return ExperimentResult(
        runs=runs, summary=summarise(runs),
        streams={key: StreamInfo.of(stream) for key, stream in streams.items()},
        reward_chunks={k: np.mean(v, axis=0) for k, v in reward_chunks.items()},
        traffic=traffic, plot_strategy=plot_strategy, granularity=granularity,
        seconds=seconds, skipped=skipped, warnings=warnings,
        datasets={data.name: DatasetInfo.of(data, settings) for data, settings in datasets})


MEAN_COLUMNS = ["calls_per_request", "accuracy", "precision", "recall", "f1", "cost_per_1000",
                "oracle_reward", "regret", "request_oracle_reward", "request_regret",
                "gap_closed", "faulty_traffic_share", "rollback_delay", "rollbacks",
                "healthy_rollbacks", "switches"]


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, scenario, strategy): reward mean and 95% CI, other means."""
    rows = []
    for (dataset, scenario, strategy), group in runs.groupby(
            ["dataset", "scenario", "strategy"], sort=False):
        mean, low, high = mean_interval(group["mean_reward"].to_numpy())
        rows.append({"dataset": dataset, "scenario": scenario, "strategy": strategy,
                     "group": group["group"].iloc[0], "feedback": group["feedback"].iloc[0],
                     "seeds": len(group),
                     "mean_reward": mean, "ci_low": low, "ci_high": high,
                     **{c: float(group[c].mean()) for c in MEAN_COLUMNS}})
    summary = pd.DataFrame(rows)
    best_study = (summary[summary["strategy"].isin(STUDY)]
                  .groupby(["dataset", "scenario"])["mean_reward"].max()
                  .rename("best_study_reward"))
    return summary.join(best_study, on=["dataset", "scenario"])
