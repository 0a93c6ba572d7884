"""The reward model of doubly robust estimation: q_t(a), what version a would earn on row t.

Chosen for honesty over cleverness: each version's mean reward over its last ``window``
rewards logged BEFORE row t (served, and shadow rewards where the log has them), shrunk
towards the mean of the last ``window`` rewards of any version with ``prior`` pseudo-counts.
Two properties follow:

- q_t never sees r_t nor any later row, so it is fixed before a_t is drawn: the doubly robust
  terms stay martingale differences (no overfitting bias, no cross-fitting needed), and the
  estimator's interval keeps its meaning.
- The window follows drift (a version whose reward falls after a concept drift is followed
  within ``window`` of its rewards) and releases (a new version starts at the recent mean).

It ignores the request's features: the replay's rewards (was this version right on this
row?) are mostly noise around each version's current accuracy, so a per-version mean already
removes most of the variance doubly robust can remove (the validation's DR intervals are
about half as wide as IPS's). A feature model would help where versions differ by segment;
it would then need cross-fitting to stay honest.
"""

from __future__ import annotations

import numpy as np

DEFAULT_WINDOW = 500
DEFAULT_PRIOR = 5.0


def _windowed(positions: np.ndarray, values: np.ndarray, rows: int, window: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per row t: (sum, count) of the last ``window`` values at positions < t (positions
    sorted, possibly repeated)."""
    seen = np.searchsorted(positions, np.arange(rows), side="left")
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    start = np.maximum(seen - window, 0)
    return cumulative[seen] - cumulative[start], (seen - start).astype(float)


def windowed_means(action: np.ndarray, reward: np.ndarray, k: int, *,
                   shadows: dict[int, np.ndarray] | None = None,
                   window: int = DEFAULT_WINDOW, prior: float = DEFAULT_PRIOR) -> np.ndarray:
    """q_hat (n, k) from a log in time order: ``action`` (n,) column of the served version,
    ``reward`` (n,) NaN without feedback, ``shadows`` {column: (n,) rewards, NaN where none}.

    >>> q = windowed_means(np.array([0, 0, 1, 0]), np.array([1.0, 0.0, 1.0, np.nan]), 2,
    ...                    prior=0.0)
    >>> q[3].tolist()  # version 0: mean of rows 0-1; version 1: row 2
    [0.5, 1.0]
    """
    n = len(action)
    per_version: list[tuple[np.ndarray, np.ndarray]] = []
    for column in range(k):
        mask = (action == column) & ~np.isnan(reward)
        positions, values = np.flatnonzero(mask), reward[mask]
        shadow = (shadows or {}).get(column)
        if shadow is not None:
            extra = np.flatnonzero(~np.isnan(shadow) & (action != column))
            order = np.argsort(np.concatenate([positions, extra]), kind="stable")
            positions = np.concatenate([positions, extra])[order]
            values = np.concatenate([values, shadow[extra]])[order]
        per_version.append((positions, values))
    every = np.concatenate([p for p, _ in per_version]) if per_version else np.array([], int)
    order = np.argsort(every, kind="stable")
    all_values = np.concatenate([v for _, v in per_version])[order] if per_version else every
    total, count = _windowed(every[order], all_values, n, window)
    overall = np.where(count > 0, total / np.maximum(count, 1.0), 0.5)
    q = np.empty((n, k))
    for column, (positions, values) in enumerate(per_version):
        total, count = _windowed(positions, values, n, window)
        q[:, column] = (total + prior * overall) / np.maximum(count + prior, 1e-12)
        q[count + prior == 0, column] = overall[count + prior == 0]
    return q
