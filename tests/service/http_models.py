"""A model for the HTTP tests; the server process imports this module to unpickle it."""

from __future__ import annotations

import time

import numpy as np


class Sleepy:
    """Right, after sleeping x0 seconds (at most 10): a model call of a chosen length. A call
    of a second or more first touches the file named by $SLEEPY_MARK, so a test can wait
    until the slow call is under way instead of guessing how long that takes."""

    def predict(self, rows):
        import os
        from pathlib import Path

        rows = np.asarray(rows, dtype=float)
        seconds = float(np.clip(rows[:, 0].max(), 0.0, 10.0))
        if seconds >= 1.0 and os.environ.get("SLEEPY_MARK"):
            Path(os.environ["SLEEPY_MARK"]).touch()
        time.sleep(seconds)
        return (rows[:, 0] + 0.5 * rows[:, 1] > 0).astype(int)
