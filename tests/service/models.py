"""Models for the service tests. The server process imports this module to unpickle them."""

from __future__ import annotations

import time

import numpy as np

FEATURES = ["x0", "x1", "x2", "x3"]


def make_rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features and the true labels (a linear rule the good model learns)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES)))
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)


def as_features(row: np.ndarray) -> dict[str, float]:
    return {name: float(value) for name, value in zip(FEATURES, row, strict=True)}


class Exploding:
    """Raises on every prediction: a version whose serving code is broken."""

    def predict(self, rows):
        raise RuntimeError("segmentation of the feature store failed")


class Slow:
    """Right, but slower than any reasonable timeout."""

    def predict(self, rows):
        time.sleep(0.3)
        rows = np.asarray(rows, dtype=float)
        return (rows[:, 0] + 0.5 * rows[:, 1] > 0).astype(int)


SLEEP_SIGNAL = 777.0  # x0 value that makes SleepsOnSignal sleep


class SleepsOnSignal:
    """Right and fast, except for rows with x0 == SLEEP_SIGNAL: then it takes 5 s, and first
    touches the file named by $BANDITOPS_TEST_SLEEP_MARK so a test knows the call started."""

    seconds = 5.0

    def predict(self, rows):
        import os
        from pathlib import Path

        rows = np.asarray(rows, dtype=float)
        if (rows[:, 0] == SLEEP_SIGNAL).any():
            mark = os.environ.get("BANDITOPS_TEST_SLEEP_MARK")
            if mark:
                Path(mark).touch()
            time.sleep(self.seconds)
        return (rows[:, 0] + 0.5 * rows[:, 1] > 0).astype(int)


# ------------------------------------------------------------------ mixed-type models
MIXED = {"age": "number?", "income": "number?", "visits": "number", "plan": "string?"}
PLANS = ["basic", "pro", "team"]


def mixed_rows(n: int, seed: int = 0, nulls: float = 0.0):
    """A frame of two float columns, an int column and a string column, and "yes"/"no"
    labels; with ``nulls`` > 0, that share of age, income and plan missing (NaN, and ""
    for plan, the missing value an ONNX export can impute)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.normal(40, 10, n), "income": rng.normal(5, 2, n),
        "visits": rng.integers(0, 8, n), "plan": rng.choice(PLANS, n)})
    labels = np.where((frame.age - 40) / 10 + (frame.plan == "pro") * 1.5
                      - (frame.visits > 4) + rng.normal(0, 0.5, n) > 0.5, "yes", "no")
    if nulls:
        for column in ("age", "income", "plan"):
            gone = rng.random(n) < nulls
            frame.loc[gone, column] = "" if column == "plan" else np.nan
    return frame, labels


def mixed_pipeline(impute: bool = True):
    """OneHotEncoder over plan, StandardScaler over the numbers, then a logistic regression;
    with ``impute``, SimpleImputers first (mean for numbers, "missing" for an empty plan)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = [SimpleImputer()] if impute else []
    strings = [SimpleImputer(missing_values="", strategy="constant",
                             fill_value="missing")] if impute else []
    columns = ColumnTransformer([
        ("numbers", make_pipeline(*numbers, StandardScaler()), ["age", "income"]),
        ("counts", StandardScaler(), ["visits"]),
        ("plan", make_pipeline(*strings, OneHotEncoder(handle_unknown="ignore")), ["plan"])])
    return make_pipeline(columns, LogisticRegression())


def mixed_onnx(pipeline, frame) -> bytes:
    """skl2onnx's export: one input per column (age, income float; visits int64; plan
    string), a string label output."""
    from skl2onnx import to_onnx

    sample = frame[:1].astype({"age": np.float32, "income": np.float32})
    return to_onnx(pipeline, sample, options={"zipmap": False}).SerializeToString()


class RightWhere:
    """Right where ``sign * x2 > 0``, wrong elsewhere: two of them are each the better
    version for half of the requests, so only a policy that routes on the features can be
    right on nearly all of them (contextual routing, issue 12)."""

    def __init__(self, sign: float) -> None:
        self.sign = sign

    def predict(self, rows):
        rows = np.asarray(rows, dtype=float)
        truth = (rows[:, 0] + 0.5 * rows[:, 1] > 0).astype(int)
        return np.where(self.sign * rows[:, 2] > 0, truth, 1 - truth)
