"""Write two example churn models as .skops files, for examples/config.toml.

    python examples/make_models.py [--out examples/models]

Synthetic customers (``age``, ``plan``) and whether they churned ("yes"/"no"); each model is
a scikit-learn pipeline (one-hot plan, scaled age, logistic regression), which the service
loads through its skops allow-list. v2 sees more data than v1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from skops.io import dump

PLANS = ("basic", "pro", "team")


def customers(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` customers and their churn label: the young on the basic plan leave most."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.integers(18, 80, n).astype(float),
                          "plan": rng.choice(PLANS, n)})
    score = 2.0 - 0.05 * frame["age"] + frame["plan"].map({"basic": 1.0, "pro": 0.0,
                                                           "team": -1.0})
    churned = rng.random(n) < 1 / (1 + np.exp(-score))
    return frame, np.where(churned, "yes", "no")


def model() -> Pipeline:
    columns = ColumnTransformer([("age", StandardScaler(), ["age"]),
                                 ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])])
    return Pipeline([("columns", columns), ("classify", LogisticRegression())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "models",
                        help="Folder for the .skops files (default: examples/models).")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    test_x, test_y = customers(2000, seed=99)
    for name, rows in (("churn-v1", 300), ("churn-v2", 3000)):
        x, y = customers(rows, seed=rows)
        fitted = model().fit(x, y)
        path = args.out / f"{name}.skops"
        dump(fitted, path)
        print(f"{path}: accuracy {fitted.score(test_x, test_y):.3f} on held-out customers")


if __name__ == "__main__":
    main()
