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
