"""The continuous-training pipeline a replay runs: when versions are released, on what data.

The stream is cut into chunks of ``chunk_size`` rows in time order. Releases are due at the
start of chunks ``1, 1 + release_every, ...``; one whose training rows hold a single class
is skipped (nothing can be learned yet), so release r is the r-th that could be trained.
Each is trained on the most recent ``train_window`` rows whose labels have *arrived* by
then (labels arrive ``delay`` rows after their request), minus the last
``validation_fraction`` of them, which give its validation score (the replay's reward, so
that on fraud a model that never flags anything does not look good). Models predict the
positive class above the reward's cost-optimal probability threshold
(:func:`~banditops.rewards.decision_threshold`). Families cycle through
:data:`~banditops.simulation.models.FAMILIES`. Each version predicts every row it may serve
once, in one batch; a release the scenario marks faulty serves those predictions through
the serving cache bug.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from banditops.errors import InvalidParameterError
from banditops.rewards import RewardFunction, accuracy, decision_threshold, row_rewards
from banditops.simulation.models import FAMILIES, fit, make_model
from banditops.simulation.scenarios import Scenario, ScenarioNotApplicable, serving_cache_bug


@dataclass(frozen=True)
class Release:
    """One model version as the pipeline released it."""

    index: int
    name: str
    family: str
    row: int  # first stream row it can serve
    train_rows: tuple[int, int]  # [start, end) of its training rows
    validation_rows: tuple[int, int]
    validation_score: float
    faulty: bool
    predictions: np.ndarray  # for stream rows row..n-1, as served in production
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0  # validation and serving predictions


def release_rows(n: int, chunk_size: int, release_every: int) -> list[int]:
    """Stream rows at which releases happen."""
    return list(range(chunk_size, n, chunk_size * release_every))


def build_releases(scenario: Scenario, *, chunk_size: int, release_every: int = 2,
                   train_window: int = 8000, validation_fraction: float = 0.2,
                   delay: int = 0, families: Sequence[str] = FAMILIES, seed: int = 0,
                   class_weight: str | None = None, reward: RewardFunction = accuracy,
                   progress: Callable[[Release], None] | None = None) -> list[Release]:
    """Train and release every version of a replay (see the module docstring)."""
    n = len(scenario.labels)
    if chunk_size < 50 or chunk_size * 2 > n:
        raise InvalidParameterError(
            f"chunk_size must be at least 50 and at most half the stream ({n} rows), "
            f"got {chunk_size}")
    if release_every < 1 or train_window < 50 or not 0.0 < validation_fraction < 0.5:
        raise InvalidParameterError("release_every >= 1, train_window >= 50 and "
                                    "0 < validation_fraction < 0.5 are required")
    if delay < 0 or delay >= chunk_size:
        raise InvalidParameterError(f"delay must be in [0, chunk_size), got {delay}")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise InvalidParameterError(f"unknown model families {unknown}; known: {FAMILIES}")
    features, labels = scenario.features, scenario.labels
    releases = []
    one_class = []
    for row in release_rows(n, chunk_size, release_every):
        index = len(releases)
        labelled_end = row - delay  # labels of later requests have not arrived yet
        start = max(0, labelled_end - train_window)
        split = labelled_end - max(1, int((labelled_end - start) * validation_fraction))
        family = families[index % len(families)]
        train_labels = labels[start:split]
        if len(np.unique(train_labels)) < 2:
            # Nothing to learn yet (a stream that starts with one class, e.g. ordered by a
            # strong predictor): this release is skipped and the next one tried.
            one_class.append(f"{start:,}-{split:,}")
            continue
        model = make_model(family, features.iloc[start:split], seed=seed + index,
                           class_weight=class_weight, threshold=decision_threshold(reward))
        started = time.perf_counter()
        fit(model, features.iloc[start:split], train_labels)
        fitted = time.perf_counter()
        validation_score = float(row_rewards(
            reward, labels[split:labelled_end],
            np.asarray(model.predict(features.iloc[split:labelled_end]), dtype=int)).mean())
        predictions = np.asarray(model.predict(features.iloc[row:]), dtype=int)
        predicted = time.perf_counter()
        faulty = scenario.is_faulty_release(index)
        if faulty:
            predictions = serving_cache_bug(predictions)
        release = Release(index, f"v{index + 1}-{family}", family, row, (start, split),
                          (split, labelled_end), validation_score, faulty, predictions,
                          fitted - started, predicted - fitted)
        releases.append(release)
        if progress is not None:
            progress(release)
    if not releases:
        raise ScenarioNotApplicable(
            f"every training window (rows {one_class[0]}, ...) holds one class only: the "
            "rows look grouped by the target, not ordered in time; replay them in time "
            "order (--order-by a date or time column)")
    return releases
