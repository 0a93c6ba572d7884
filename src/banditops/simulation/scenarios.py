"""Scenarios: how the replayed stream differs from the data as recorded.

- ``natural``: the data in its own order (file order for Adult, claim time for fraud).
- ``covariate-shift``: rows are reordered so the population drifts gradually. Each row's
  position is its rank on a driving feature plus noise of a fifth of the stream, so early
  chunks hold mostly one end of it and late chunks the other, and neighbouring chunks
  overlap. The driver is Adult's age and the fraud data's policy-holder age band; on any
  other table, the feature with the most mutual information with the label (a categorical
  one orders its categories from the most to the least frequent). Labels are untouched:
  what a model learned stays true, but the mix it is asked about moves away from what it saw.
- ``concept-drift``: from ``drift_at`` (default half-way) on, the label relationship changes
  for one segment: its labels flip (with several classes, each moves to the next class).
  The segment is the most frequent value of a categorical column (Adult: married-couple
  households; the fraud data: the most common policy type; any other table: the most
  informative categorical column whose most frequent value holds 10-90% of the rows, else
  the upper half of the most informative numeric column). Versions trained before the
  drift are now wrong on that segment, and only retrained ones, or a policy that follows
  production reward, recover.
- ``faulty-release``: the data is natural, but every ``faulty_every``-th release (from the
  second on) is broken in production in a way its offline validation cannot see: its
  serving feature cache hands it another request's features (:func:`serving_cache_bug`), so
  its predictions are unrelated to the request they answer.

A scenario a table cannot support (no feature that varies, no segment of a useful size) raises
:class:`ScenarioNotApplicable`: the experiment skips it with that reason, and runs the rest.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.feature_selection import mutual_info_classif

from banditops.errors import BanditOpsError, InvalidParameterError

SCENARIOS = ("natural", "covariate-shift", "concept-drift", "faulty-release")
CACHE_BUG_OFFSET = 97
IDENTIFIER_SHARE = 0.5  # a text column with more distinct values than this share of rows

# Per built-in dataset: the numeric column that drives covariate shift and the categorical
# column whose most frequent value is the concept-drift segment. Any other table: chosen by
# informativeness (see _shift_driver and _segment).
DRIVERS = {
    "adult": ("age", "relationship"),
    "vehicle-insurance-fraud": ("Age", "PolicyType"),
}


class ScenarioNotApplicable(BanditOpsError):
    """This table cannot support this scenario (the run skips it, with this reason)."""


@dataclass(frozen=True)
class Scenario:
    """A stream prepared for replay, and what was done to it."""

    name: str
    features: pd.DataFrame
    labels: np.ndarray
    description: str
    drift_at: int | None = None  # first row whose label relationship changed
    segment: str | None = None  # "column == value" whose labels flip after drift_at
    driver: str | None = None  # the column covariate shift orders rows by
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


def informativeness(features: pd.DataFrame, labels: np.ndarray, *, seed: int = 0,
                    sample: int = 5000) -> pd.Series:
    """Mutual information between each feature and the label, on a sample of rows: how much
    knowing the column tells about the class (0 for a constant or unrelated column, and for
    a text column whose values are mostly distinct: a name or an identifier, which would
    "predict" every sampled label)."""
    rng = np.random.default_rng(seed)
    rows = (np.sort(rng.choice(len(labels), sample, replace=False))
            if len(labels) > sample else np.arange(len(labels)))
    columns, discrete = {}, []
    for column in features.columns:
        values = features[column].iloc[rows]
        if pd.api.types.is_numeric_dtype(values):
            filled = values.astype(float).fillna(values.median()).fillna(0.0)
            columns[column] = filled.to_numpy()
            discrete.append(bool(filled.nunique() <= 20))
        elif values.nunique() > IDENTIFIER_SHARE * len(values):
            columns[column] = np.zeros(len(values))  # an identifier or free text: no driver
            discrete.append(True)
        else:
            # The 20 most frequent categories and "other": mutual information grows with
            # the number of categories, whatever they say about the label.
            common = values.value_counts().index[:20]
            codes = pd.factorize(values.where(values.isin(common), "\0other"),
                                 use_na_sentinel=False)[0]
            columns[column] = codes.astype(float)
            discrete.append(True)
    matrix = np.column_stack(list(columns.values()))
    with warnings.catch_warnings():  # discrete columns arrive as float codes: harmless
        warnings.filterwarnings("ignore", message="Clustering metrics expects discrete")
        scores = mutual_info_classif(matrix, np.asarray(labels)[rows],
                                     discrete_features=discrete, random_state=seed)
    constant = [np.ptp(matrix[:, i]) == 0 for i in range(matrix.shape[1])]
    return pd.Series(np.where(constant, 0.0, scores), index=list(columns)).sort_values(
        ascending=False, kind="stable")


def _shift_driver(dataset: str, features: pd.DataFrame, labels: np.ndarray
                  ) -> tuple[str, np.ndarray, str]:
    """(column, values to order rows by, how it was chosen) for covariate shift: the
    documented column on the built-in datasets, else the most informative one. Categories
    are ordered from the most to the least frequent."""
    if dataset in DRIVERS:
        column, why = DRIVERS[dataset][0], ""
    else:
        scores = informativeness(features, labels)
        varying = [c for c in scores.index if features[c].nunique(dropna=True) > 1]
        if not varying:
            raise ScenarioNotApplicable("covariate-shift needs a feature that varies; every "
                                        "feature of this table is constant")
        column, why = varying[0], ", the most informative feature"
    values = features[column]
    if not pd.api.types.is_numeric_dtype(values):
        frequency = values.value_counts(dropna=False)
        values = values.map({v: i for i, v in enumerate(frequency.index)})
        return column, values.to_numpy(dtype=float), f"{why} (most frequent categories first)"
    return column, values.to_numpy(dtype=float), why


def _segment(dataset: str, features: pd.DataFrame, labels: np.ndarray,
             dates: frozenset[str] = frozenset()) -> tuple[np.ndarray, str]:
    """(rows in the segment, "column == value" or "column > median") for concept drift.

    The built-in datasets use their documented column's most frequent value. Elsewhere:
    the most informative categorical column whose most frequent value holds 10-90% of the
    rows, else the most informative numeric column split at its median (when that split
    holds 10-90% of the rows)."""
    if dataset in DRIVERS:
        column = DRIVERS[dataset][1]
        value = features[column].mode().iloc[0]
        return (features[column] == value).to_numpy(), f"{column} == {value!r}"
    scores = informativeness(features, labels)
    candidates: list[tuple[bool, float, np.ndarray, str]] = []
    for column, score in scores.items():
        values = features[column]
        if values.nunique(dropna=True) < 2:
            continue
        if pd.api.types.is_numeric_dtype(values):
            cut = float(values.median())
            shown = _as_date(cut) if column in dates else f"{cut:.4g}"
            mask, text = (values > cut).to_numpy(), f"{column} > {shown}"
        else:
            value = values.mode().iloc[0]
            mask, text = (values == value).to_numpy(), f"{column} == {value!r}"
        if 0.1 <= mask.mean() <= 0.9:
            candidates.append((pd.api.types.is_numeric_dtype(values), -score, mask, text))
    if not candidates:
        raise ScenarioNotApplicable(
            "concept-drift needs a segment of 10-90% of the rows (a frequent category or a "
            "numeric column's upper half); no feature of this table gives one")
    _, _, mask, text = min(candidates, key=lambda c: (c[0], c[1]))
    return mask, text


def _as_date(days: float) -> str:
    """Days since 1970 as the date they are (with the time of day when there is one).

    >>> _as_date(16071.0), _as_date(16071.25)
    ('2014-01-01', '2014-01-01 06:00')
    """
    moment = pd.Timestamp("1970-01-01") + pd.Timedelta(days=days)
    return moment.strftime("%Y-%m-%d" if moment == moment.normalize() else "%Y-%m-%d %H:%M")


def make_scenario(name: str, dataset: str, features: pd.DataFrame, labels: np.ndarray, *,
                  seed: int = 0, drift_at: float = 0.5, faulty_every: int = 3,
                  dates: frozenset[str] = frozenset()) -> Scenario:
    """Apply scenario ``name`` to a stream (features and class codes, in time order).
    ``dates``: columns holding dates as days since 1970 (named as dates in descriptions).

    Raises :class:`ScenarioNotApplicable` when the table cannot support the scenario."""
    labels = np.asarray(labels)
    n = len(labels)
    if name == "natural":
        return Scenario(name, features, labels, "the rows in the dataset's own order")
    if name == "faulty-release":
        if not isinstance(faulty_every, int) or faulty_every < 2:
            raise InvalidParameterError(f"faulty_every must be an integer >= 2, got {faulty_every}")
        return Scenario(name, features, labels,
                        f"every {ordinal(faulty_every)} release serves another request's "
                        "features",
                        faulty_every=faulty_every)
    if name == "covariate-shift":
        column, values, why = _shift_driver(dataset, features, labels)
        rng = np.random.default_rng(seed)
        rank = pd.Series(values).rank(method="first").to_numpy() - 1
        key = np.nan_to_num(rank, nan=n / 2) + rng.normal(0.0, n / 5, n)
        order = np.argsort(key, kind="stable")
        return Scenario(name, features.iloc[order].reset_index(drop=True), labels[order],
                        f"rows ordered by {column}{why}, with noise: the population drifts",
                        driver=column)
    if name == "concept-drift":
        if not 0.0 < drift_at < 1.0:
            raise InvalidParameterError(f"drift_at must be in (0, 1), got {drift_at}")
        segment, text = _segment(dataset, features, labels, dates)
        start = int(n * drift_at)
        flip = segment & (np.arange(n) >= start)
        classes = int(labels.max()) + 1
        # Binary: the label flips; several classes: each moves to the next class.
        drifted = np.where(flip, (labels + 1) % max(classes, 2), labels)
        change = "flip" if classes <= 2 else "move to the next class"
        return Scenario(name, features, drifted,
                        f"labels {change} for {text} from row {start:,}",
                        drift_at=start, segment=text)
    raise InvalidParameterError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
