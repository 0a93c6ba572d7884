"""Scenarios: how the replayed stream differs from the data as recorded.

- ``natural``: the data in its own order (file order for Adult, claim time for fraud).
- ``covariate-shift``: rows are reordered so the population drifts gradually. Each row's
  position is its rank on a driving feature (Adult: age; fraud: the policy holder's age band)
  plus noise of a fifth of the stream, so early chunks hold mostly young people, late
  chunks mostly old ones, and neighbouring chunks overlap. Labels are untouched: what a
  model learned stays true, but the mix it is asked about moves away from what it saw.
- ``concept-drift``: from ``drift_at`` (default half-way) on, the label relationship changes
  for one segment (the most frequent value of a driving categorical column, e.g. Adult's
  married-couple households): their labels are flipped. Versions trained before the drift
  are now wrong on that segment, and only retrained ones, or a policy that follows
  production reward, recover.
- ``faulty-release``: the data is natural, but every ``faulty_every``-th release (from the
  second on) is broken in production in a way its offline validation cannot see: its
  serving feature cache hands it another request's features (:func:`serving_cache_bug`), so
  its predictions are unrelated to the request they answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from banditops.errors import InvalidParameterError

SCENARIOS = ("natural", "covariate-shift", "concept-drift", "faulty-release")
CACHE_BUG_OFFSET = 97

# Per dataset: the numeric column that drives covariate shift and the categorical column
# whose most frequent value is the concept-drift segment. Any other table: first numeric /
# first categorical column.
DRIVERS = {
    "adult": ("age", "relationship"),
    "vehicle-insurance-fraud": ("Age", "PolicyType"),
}


@dataclass(frozen=True)
class Scenario:
    """A stream prepared for replay, and what was done to it."""

    name: str
    features: pd.DataFrame
    labels: np.ndarray
    description: str
    drift_at: int | None = None  # first row whose label relationship changed
    segment: str | None = None  # "column == value" whose labels flip after drift_at
    faulty_every: int | None = None  # every this-many-th release is broken in production

    def is_faulty_release(self, release_index: int) -> bool:
        """Whether release number ``release_index`` (0 = the first) is broken in production."""
        return (self.faulty_every is not None and release_index > 0
                and release_index % self.faulty_every == self.faulty_every - 1)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, ...

    >>> [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 103)]
    ['1st', '2nd', '3rd', '4th', '11th', '12th', '13th', '21st', '22nd', '103rd']
    """
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def serving_cache_bug(predictions: np.ndarray) -> np.ndarray:
    """What a version serves when its feature cache hands it another request's features."""
    return np.roll(np.asarray(predictions), -CACHE_BUG_OFFSET)


def _drivers(dataset: str, features: pd.DataFrame) -> tuple[str, str]:
    if dataset in DRIVERS:
        return DRIVERS[dataset]
    numeric = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
    categorical = [c for c in features.columns if c not in numeric]
    if not numeric or not categorical:
        raise InvalidParameterError(
            "covariate-shift and concept-drift need at least one numeric and one categorical "
            f"feature; this table has numeric {numeric} and categorical {categorical}")
    return numeric[0], categorical[0]


def make_scenario(name: str, dataset: str, features: pd.DataFrame, labels: np.ndarray, *,
                  seed: int = 0, drift_at: float = 0.5, faulty_every: int = 3) -> Scenario:
    """Apply scenario ``name`` to a stream (features and 0/1 labels, in time order)."""
    labels = np.asarray(labels)
    n = len(labels)
    if name == "natural":
        return Scenario(name, features, labels, "the data in its recorded order")
    if name == "faulty-release":
        if not isinstance(faulty_every, int) or faulty_every < 2:
            raise InvalidParameterError(f"faulty_every must be an integer >= 2, got {faulty_every}")
        return Scenario(name, features, labels,
                        f"every {ordinal(faulty_every)} release serves another request's "
                        "features",
                        faulty_every=faulty_every)
    numeric, categorical = _drivers(dataset, features)
    if name == "covariate-shift":
        rng = np.random.default_rng(seed)
        rank = features[numeric].rank(method="first").to_numpy() - 1
        key = np.nan_to_num(rank, nan=n / 2) + rng.normal(0.0, n / 5, n)
        order = np.argsort(key, kind="stable")
        return Scenario(name, features.iloc[order].reset_index(drop=True), labels[order],
                        f"rows ordered by {numeric} (with noise): the population drifts")
    if name == "concept-drift":
        if not 0.0 < drift_at < 1.0:
            raise InvalidParameterError(f"drift_at must be in (0, 1), got {drift_at}")
        value = features[categorical].mode().iloc[0]
        start = int(n * drift_at)
        flip = (features[categorical] == value).to_numpy() & (np.arange(n) >= start)
        drifted = np.where(flip, 1 - labels, labels)
        return Scenario(name, features, drifted,
                        f"labels flip for {categorical} == {value!r} from row {start:,}",
                        drift_at=start, segment=f"{categorical} == {value!r}")
    raise InvalidParameterError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
