"""Model versions for replays: scikit-learn pipelines, and their predictions computed once.

A replay serves tens of thousands of requests to many strategies. Calling a pipeline per
request would dominate the run, so each version predicts every row once, in one batch, and
:class:`PrecomputedModel` serves those predictions by row index through the ordinary
``Deployment`` path (River's ``predict_one`` convention).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import FixedThresholdClassifier
from sklearn.naive_bayes import BernoulliNB
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder, StandardScaler

from banditops.errors import InvalidParameterError

FAMILIES = ("logistic-regression", "gradient-boosting", "random-forest", "naive-bayes")


def _preprocessor(features: pd.DataFrame, *, dense: bool, binned: bool = False
                  ) -> ColumnTransformer:
    """Impute, scale (or bin into quantiles) numbers; impute and one-hot encode categories."""
    numeric = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
    categorical = [c for c in features.columns if c not in numeric]
    scale = (KBinsDiscretizer(n_bins=8, encode="onehot", strategy="quantile",
                              quantile_method="averaged_inverted_cdf")
             if binned else StandardScaler())
    return ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), scale), numeric),
        ("categorical", make_pipeline(
            SimpleImputer(strategy="constant", fill_value="missing"),
            OneHotEncoder(handle_unknown="ignore", min_frequency=20, sparse_output=not dense),
        ), categorical),
    ], sparse_threshold=0.0 if dense else 0.3)


def make_model(family: str, features: pd.DataFrame, *, seed: int = 0,
               class_weight: str | None = None, threshold: float = 0.5) -> BaseEstimator:
    """An unfitted pipeline of the given family for these (mixed-type) features.

    ``threshold``: predict the positive class when its probability exceeds it (see
    :func:`banditops.rewards.decision_threshold`: 1/21 when a miss costs 20 false alarms).
    """
    model = _pipeline(family, features, seed=seed, class_weight=class_weight)
    if threshold == 0.5:
        return model
    return FixedThresholdClassifier(model, threshold=threshold, response_method="predict_proba")


def _pipeline(family: str, features: pd.DataFrame, *, seed: int,
              class_weight: str | None) -> Pipeline:
    if family == "logistic-regression":
        estimator = LogisticRegression(max_iter=300, class_weight=class_weight)
        dense = False
    elif family == "gradient-boosting":
        estimator = HistGradientBoostingClassifier(
            max_iter=100, random_state=seed, class_weight=class_weight)
        dense = True
    elif family == "random-forest":
        estimator = RandomForestClassifier(
            n_estimators=60, min_samples_leaf=3, n_jobs=1, random_state=seed,
            class_weight=class_weight)
        dense = False
    elif family == "naive-bayes":
        # Bernoulli NB over quantile bins and one-hot categories: Gaussian NB on one-hot
        # columns scored 0.56 on Adult, this 0.78.
        return Pipeline([("prepare", _preprocessor(features, dense=False, binned=True)),
                         ("model", BernoulliNB())])
    else:
        raise InvalidParameterError(f"unknown model family {family!r}; known: {FAMILIES}")
    return Pipeline([("prepare", _preprocessor(features, dense=dense)), ("model", estimator)])


def fit(model: BaseEstimator, features: pd.DataFrame, labels: np.ndarray) -> BaseEstimator:
    """Fit, silencing the binning notices about discrete columns (their bins merge; harmless)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Bins whose width", category=UserWarning)
        warnings.filterwarnings("ignore", message="Feature .* is constant", category=UserWarning)
        return model.fit(features, labels)


class PrecomputedModel:
    """Serves predictions made in advance for rows ``0..n-1``: ``predict_one(row) -> label``."""

    def __init__(self, predictions: Sequence[int] | np.ndarray, family: str = "") -> None:
        self.predictions = np.asarray(predictions)
        self._lookup = self.predictions.tolist()
        self.family = family

    def predict_one(self, row: int) -> int:
        return self._lookup[row]

    def predict(self, rows: Sequence[int]) -> np.ndarray:
        return self.predictions[np.asarray(rows, dtype=int)]
