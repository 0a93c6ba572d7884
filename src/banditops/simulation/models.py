"""Model versions for replays: scikit-learn pipelines, and their predictions computed once.

A replay serves tens of thousands of requests to many strategies. Calling a pipeline per
request would dominate the run, so each version predicts every row once, in one batch, and
:class:`PrecomputedModel` serves those predictions by row index through the ordinary
``Deployment`` path (River's ``predict_one`` convention).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from banditops.errors import InvalidParameterError

FAMILIES = ("logistic-regression", "gradient-boosting", "random-forest", "naive-bayes")


def _preprocessor(features: pd.DataFrame, *, dense: bool) -> ColumnTransformer:
    numeric = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
    categorical = [c for c in features.columns if c not in numeric]
    return ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("categorical", make_pipeline(
            SimpleImputer(strategy="constant", fill_value="missing"),
            OneHotEncoder(handle_unknown="ignore", min_frequency=20, sparse_output=not dense),
        ), categorical),
    ], sparse_threshold=0.0 if dense else 0.3)


def make_model(family: str, features: pd.DataFrame, *, seed: int = 0,
               class_weight: str | None = None) -> Pipeline:
    """An unfitted pipeline of the given family for these (mixed-type) features."""
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
        estimator = GaussianNB()
        dense = True
    else:
        raise InvalidParameterError(f"unknown model family {family!r}; known: {FAMILIES}")
    return Pipeline([("prepare", _preprocessor(features, dense=dense)), ("model", estimator)])


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
