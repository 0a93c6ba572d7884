"""A replay stream: one (dataset, scenario) with its released versions, prepared once.

Every strategy and seed replays the same :class:`Stream`: the same rows in the same order,
the same versions released at the same rows, and the same predictions. What each version
would earn on each row is computed here once (``rewards``), so metrics and the hindsight
oracle cost an array lookup, not a model call.

The pipeline keeps at most ``max_live`` versions in service: when release ``r`` arrives,
release ``r - max_live`` is retired. The oracles choose among those pipeline-live versions:
the *per-chunk* oracle serves each chunk with the version that did best on it in hindsight,
the *per-request* oracle each row with a version that was right on it (the best any router
could do, one that knew each request's outcome). A contextual router can beat the first,
never the second.

The stream also carries the requests' features in stream order (``features``, after the
scenario's reordering), which contextual strategies route on; a few MB for the built-in
datasets (Adult: 9 MB, fraud: 7 MB), forked into local workers and put once in Ray's
object store like the arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from banditops.errors import InvalidParameterError
from banditops.rewards import RewardFunction, row_rewards
from banditops.simulation.pipeline import Release, build_releases, release_rows
from banditops.simulation.scenarios import (
    Scenario,
    ScenarioNotApplicable,
    make_scenario,
    ordinal,
)


@dataclass(frozen=True)
class StreamSettings:
    """How a dataset is replayed: chunking, label delay, releases and the reward."""

    chunk_size: int
    delay: int
    reward: RewardFunction
    reward_name: str
    release_every: int = 2
    max_live: int = 4
    train_window: int = 8000
    class_weight: str | None = None
    guardrail_margin: float = 0.05  # a reward gap that matters on this dataset's scale

    def __post_init__(self) -> None:
        if not isinstance(self.max_live, int) or self.max_live < 2:
            raise InvalidParameterError(f"max_live must be an integer >= 2, got {self.max_live}")


@dataclass(frozen=True)
class VersionInfo:
    """A released version as replays see it (its predictions live in the stream's arrays)."""

    name: str
    family: str
    row: int  # first row it serves
    end: int  # row at which the pipeline retires it (n if never)
    validation_score: float
    faulty: bool
    production_reward: float  # its mean reward over the rows the pipeline had it live


@dataclass(frozen=True)
class Stream:
    dataset: str
    scenario: str
    description: str
    settings: StreamSettings
    labels: np.ndarray  # (n,) class codes
    versions: list[VersionInfo]
    predictions: np.ndarray  # (versions, n) int8; -1 before a version's release
    rewards: np.ndarray  # (versions, n) float; NaN where the pipeline does not have it live
    fit_seconds: float = 0.0  # training the versions
    predict_seconds: float = 0.0  # their validation and serving predictions
    classes: int = 2  # class codes are 0..classes-1
    driver: str | None = None  # covariate shift: the column rows are ordered by
    segment: str | None = None  # concept drift: the rows whose labels change ...
    drift_at: int | None = None  # ... from this row on
    faulty_every: int | None = None  # faulty-release: every this-many-th release is broken
    features: pd.DataFrame | None = None  # (n, features) the requests, in stream order

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def start(self) -> int:
        """First row served: nothing is deployed before the first release."""
        return self.versions[0].row

    @property
    def chunk_size(self) -> int:
        return self.settings.chunk_size

    def chunk_bounds(self) -> list[tuple[int, int]]:
        """[start, end) of every served chunk (the rows before the first release excluded)."""
        size = self.chunk_size
        return [(s, min(s + size, self.n)) for s in range(self.start, self.n, size)]

    def oracle_chunk_rewards(self) -> np.ndarray:
        """Per chunk, the reward total of the best pipeline-live version in hindsight."""
        totals = []
        for start, end in self.chunk_bounds():
            sums = np.nansum(self.rewards[:, start:end], axis=1)
            live = ~np.isnan(self.rewards[:, start])
            totals.append(float(sums[live].max()))
        return np.asarray(totals)

    def oracle_request_rewards(self) -> np.ndarray:
        """Per served row (from ``start`` on), the reward of the best pipeline-live version
        on that row in hindsight, shape (n - start,)."""
        return np.nanmax(self.rewards[:, self.start:], axis=0)


def stream_from_releases(dataset: str, scenario: str | Scenario, description: str,
                         settings: StreamSettings, labels: np.ndarray,
                         releases: list[Release], classes: int = 2,
                         features: pd.DataFrame | None = None) -> Stream:
    """Lay the releases out as row-aligned arrays (see the module docstring)."""
    labels = np.asarray(labels)
    n = len(labels)
    if not releases:
        raise InvalidParameterError("a stream needs at least one release")
    predictions = np.full((len(releases), n), -1, dtype=np.int8)
    rewards = np.full((len(releases), n), np.nan)
    versions = []
    for index, release in enumerate(releases):
        later = index + settings.max_live
        end = releases[later].row if later < len(releases) else n
        predictions[index, release.row:] = release.predictions
        rewards[index, release.row:end] = row_rewards(
            settings.reward, labels[release.row:end], release.predictions[:end - release.row])
        versions.append(VersionInfo(release.name, release.family, release.row, end,
                                    release.validation_score, release.faulty,
                                    float(np.mean(rewards[index, release.row:end]))))
    facts = ({"driver": scenario.driver, "segment": scenario.segment,
              "drift_at": scenario.drift_at, "faulty_every": scenario.faulty_every}
             if isinstance(scenario, Scenario) else {})
    if features is None and isinstance(scenario, Scenario):
        features = scenario.features
    if features is not None and len(features) != n:
        raise InvalidParameterError(f"{len(features)} rows of features for {n} labels")
    name = scenario.name if isinstance(scenario, Scenario) else scenario
    return Stream(dataset, name, description, settings, labels, versions, predictions,
                  rewards, sum(r.fit_seconds for r in releases),
                  sum(r.predict_seconds for r in releases), classes=classes, features=features,
                  **facts)


def prepare_stream(dataset: str, features: pd.DataFrame, labels: np.ndarray, scenario: str,
                   settings: StreamSettings, *, seed: int = 0, classes: int = 2,
                   dates: frozenset[str] = frozenset(),
                   progress: Callable[[Release], None] | None = None) -> Stream:
    """Apply the scenario, run the training pipeline, and lay out the stream.

    Raises :class:`ScenarioNotApplicable` when the table cannot support the scenario."""
    prepared = make_scenario(scenario, dataset, features, labels, seed=seed, dates=dates)
    if prepared.faulty_every is not None:
        count = len(release_rows(len(labels), settings.chunk_size, settings.release_every))
        if count < prepared.faulty_every:
            raise ScenarioNotApplicable(
                f"faulty-release breaks the {ordinal(prepared.faulty_every)} release, but "
                f"{len(labels):,} rows in chunks of {settings.chunk_size:,} give only {count} "
                "release(s); use a smaller --chunk-size")
    releases = build_releases(
        prepared, chunk_size=settings.chunk_size, release_every=settings.release_every,
        train_window=settings.train_window, delay=settings.delay, seed=seed,
        class_weight=settings.class_weight, reward=settings.reward, progress=progress)
    if prepared.faulty_every is not None and not any(r.faulty for r in releases):
        raise ScenarioNotApplicable(
            f"faulty-release breaks the {ordinal(prepared.faulty_every)} release, but only "
            f"{len(releases)} release(s) could be trained on this table")
    return stream_from_releases(dataset, prepared, prepared.description, settings,
                                prepared.labels, releases, classes=classes)
