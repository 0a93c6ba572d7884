"""Small synthetic tables for end-to-end runs of ``banditops experiment --csv``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def synthetic_table(path: Path, rows: int = 6_000, seed: int = 0) -> Path:
    """A CSV of ``rows`` rows with two numeric and two categorical features and a binary
    ``label`` that depends on both kinds (so every model family learns something)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "amount": rng.lognormal(3.0, 1.0, rows).round(2),
        "score": rng.normal(0.0, 1.0, rows).round(4),
        "region": rng.choice(["north", "south", "east", "west"], rows, p=[0.4, 0.3, 0.2, 0.1]),
        "channel": rng.choice(["web", "shop", "phone"], rows),
    })
    signal = (0.8 * frame["score"] + 0.4 * np.log(frame["amount"]) - 1.2
              + frame["region"].map({"north": 0.5, "south": -0.3, "east": 0.0, "west": -0.8})
              + (frame["channel"] == "web") * 0.3 + rng.normal(0.0, 0.8, rows))
    frame["label"] = (signal > 0).astype(int)
    frame.to_csv(path, index=False)
    return path
