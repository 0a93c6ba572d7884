"""Deployment.predict_batch against the fastest model's own predict, on the same rows.

Run: ``.venv/bin/python benchmarks/predict_batch.py [--rows 10000] [--data auto|adult|synthetic]``

Three fitted scikit-learn pipelines (logistic regression, gradient boosting, random forest;
those of the replay) serve a table of ``--rows`` rows: Adult when the data is found
(``BANDITOPS_DATA_DIR``), else a synthetic mixed table. Every time is the best of
``--repeats`` runs, each with a fresh Deployment of the same seed (so the same routing).

The goal (issue 10) is predict_batch within 2x of the fastest model's predict per row. A
batch split between the three versions cannot beat the models' own time on their shares
(the "model floor": each model's predict on exactly the rows routed to it), so the table
shows that floor too, and the overhead per row net of it: the policy's choice, the
decision id, the logged decision and the returned Decision, per row. The rows where the
policy routes everything to the fastest model measure the goal without the slower models.
The old way, one ``predict`` per row, is timed on a subset.

Features logged (issue 12): the even-split Thompson batch again with ``log_context=True``
(each row's features kept with its decision, for off-policy evaluation), into the in-memory
log and into a SQLite decision log (the service's ``SqlLog``: JSON in ``decisions.context``),
against the same batch without; ``--no-features`` skips it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from banditops import Deployment
from banditops.policies import Policy, ThompsonSampling, ValidationChampion
from banditops.simulation.datasets import DataNotFoundError, load
from banditops.simulation.models import make_model

FAMILIES = ("logistic-regression", "gradient-boosting", "random-forest")
GOAL = 2.0


def synthetic(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A mixed table like the ones people have: six numbers, four categories, 0/1 target."""
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(n, 6))
    frame = pd.DataFrame(numbers, columns=[f"x{i}" for i in range(6)])
    for i, levels in enumerate((3, 8, 20, 50)):
        frame[f"c{i}"] = rng.integers(0, levels, n).astype(str)
    score = numbers[:, 0] - 0.5 * numbers[:, 1] + (frame["c0"] == "1") - 0.3 * numbers[:, 2] ** 2
    return frame, (score + rng.normal(size=n) > 0).astype(int)


def table(kind: str, rows: int) -> tuple[str, pd.DataFrame, np.ndarray]:
    """(name, features, labels) with at least 2 x ``rows`` rows: train on the first half."""
    if kind in ("auto", "adult"):
        try:
            data = load("adult")
            if len(data) >= 2 * rows:
                return "adult", data.features, data.labels.to_numpy()
        except DataNotFoundError:
            if kind == "adult":
                raise
    features, labels = synthetic(2 * rows)
    return "synthetic", features, labels


Timed = tuple[Callable[[], Any], Callable[[Any], Any]]  # (setup, untimed; run, timed)


def best_times(timed: dict[str, Timed], repeats: int) -> dict[str, float]:
    """Seconds of the fastest of ``repeats`` runs of each, taken in turns so that a busy
    spell of a shared machine slows every measurement alike, not one."""
    best = dict.fromkeys(timed, float("inf"))
    for _ in range(repeats):
        for key, (setup, run) in timed.items():
            prepared = setup()
            start = time.perf_counter()
            run(prepared)
            best[key] = min(best[key], time.perf_counter() - start)
    return best


def nothing() -> None:
    return None


def deployment(policy: Policy, models: dict[str, Any], scores: dict[str, float],
               **options: Any) -> Deployment:
    d = Deployment(policy, max_pending=1_000_000, **options)
    for name, model in models.items():
        d.register(name, model, validation_score=scores[name])
    return d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="rows per batch (10,000)")
    parser.add_argument("--data", choices=("auto", "adult", "synthetic"), default="auto")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs (5)")
    parser.add_argument("--loop-rows", type=int, default=200,
                        help="rows of the one-predict-per-row reference (200; 0: skip)")
    parser.add_argument("--features", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the batch with its features logged, in memory and "
                        "in a SQLite decision log (default: on)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OpenMP/BLAS threads of the models (1: steadier on a shared machine)")
    args = parser.parse_args()
    console = Console(width=150)
    n, repeats = args.rows, args.repeats

    name, features, labels = table(args.data, n)
    train, y = features.iloc[:n], labels[:n]
    rows = features.iloc[n:2 * n].reset_index(drop=True)
    models = {family: make_model(family, train, seed=0).fit(train, y) for family in FAMILIES}
    for model in models.values():
        model.predict(rows)  # warm-up: first calls pay for imports and caches
    threadpool_limits(args.threads)

    first = best_times({f: (nothing, lambda _, m=m: m.predict(rows)) for f, m in models.items()},
                       2)  # which model the converged policies favour
    favoured = min(FAMILIES, key=first.__getitem__)
    favour = {family: 0.9 if family == favoured else 0.6 for family in FAMILIES}
    cases: dict[str, tuple[Callable[[], Policy], dict[str, float]]] = {
        "predict_batch, thompson, no feedback yet (even split)":
            (lambda: ThompsonSampling(seed=0), dict.fromkeys(FAMILIES, 0.8)),
        "predict_batch, thompson converged on the fastest":
            (lambda: ThompsonSampling(prior_weight=10_000, seed=0), favour),
        "predict_batch, validation-champion (the fastest)": (ValidationChampion, favour),
    }
    timed: dict[str, Timed] = {
        family: (nothing, lambda _, m=model: m.predict(rows)) for family, model in models.items()}
    splits = {}
    for label, (policy, scores) in cases.items():
        decisions = deployment(policy(), models, scores).predict_batch(rows)
        splits[label] = split = {f: [i for i, d in enumerate(decisions) if d.version == f]
                                 for f in FAMILIES}
        for family, indexes in split.items():  # the model floor: each model on its share
            part = rows.iloc[indexes]
            if indexes and len(indexes) < n:
                timed[f"{label}/{family}"] = (nothing, lambda _, m=models[family], x=part:
                                              m.predict(x))
        timed[label] = (lambda policy=policy, scores=scores: deployment(policy(), models,
                                                                         scores),
                        lambda d: d.predict_batch(rows))
    best = best_times(timed, repeats)
    fastest = min(FAMILIES, key=best.__getitem__)
    base = best[fastest]

    result = Table(title=f"{n:,} rows of {name} ({len(features.columns)} features), "
                         f"best of {repeats}")
    for column in ("what", "rows routed", "seconds", "µs per row", "x fastest predict",
                   "model floor x", "overhead µs/row"):
        result.add_column(column, justify="left" if column in ("what", "rows routed")
                          else "right")
    for family in FAMILIES:
        seconds = best[family]
        result.add_row(f"{family}.predict" + (" (fastest)" if family == fastest else ""),
                       "", f"{seconds:.4f}", f"{seconds / n * 1e6:.2f}", f"{seconds / base:.2f}",
                       "", "")
    ratios = {}
    for label, split in splits.items():
        floor = sum(best[family] if len(indexes) == n else best[f"{label}/{family}"]
                    for family, indexes in split.items() if indexes)
        seconds = best[label]
        ratios[label] = seconds / base
        result.add_row(label, " / ".join(f"{len(split[f]):,}" for f in FAMILIES),
                       f"{seconds:.4f}", f"{seconds / n * 1e6:.2f}", f"{seconds / base:.2f}",
                       f"{floor / base:.2f}", f"{(seconds - floor) / n * 1e6:.2f}")

    if args.loop_rows:
        m = min(args.loop_rows, n)
        subset = rows.iloc[:m].to_dict("records")

        def loop(d: Deployment) -> None:
            for x in subset:
                d.predict(x)

        seconds = best_times({"loop": (lambda: deployment(
            ThompsonSampling(seed=0), models, dict.fromkeys(FAMILIES, 0.8)), loop)}, 1)["loop"]
        result.add_row(f"predict per row (the old way), thompson, first {m:,} rows", "",
                       f"{seconds:.4f}", f"{seconds / m * 1e6:.1f}",
                       f"{seconds / m / (base / n):.1f}", "", "")
    console.print(result)
    console.print("rows routed: " + " / ".join(FAMILIES) + f"; the converged policies favour "
                  f"{favoured}; model threads: {args.threads}")
    for label, ratio in ratios.items():
        verdict = "met" if ratio <= GOAL else "missed"
        console.print(f"goal (<= {GOAL:.1f}x the fastest model's predict per row): {verdict} "
                      f"for {label} ({ratio:.2f}x)")
    if args.features:
        logged = logged_features(models, rows, repeats)
        result = Table(title="features logged (log_context=True: each row's features kept "
                             f"with its decision), thompson, even split, best of {repeats}")
        for column in ("decision log", "features", "seconds", "µs per row", "x not logged"):
            result.add_column(column, justify="left" if column in ("decision log", "features")
                              else "right")
        for log_name in ("memory", "SQL (SQLite file)"):
            off = logged[(log_name, False)]
            for flag, seconds in (("not logged", off), ("logged", logged[(log_name, True)])):
                result.add_row(log_name, flag, f"{seconds:.4f}", f"{seconds / n * 1e6:.2f}",
                               f"{seconds / off:.2f}")
        console.print(result)


def logged_features(models: dict[str, Any], rows: pd.DataFrame, repeats: int
                    ) -> dict[tuple[str, bool], float]:
    """Best seconds of one predict_batch over ``rows`` with and without each row's features
    logged, into the in-memory log and into a SQLite decision log (the service's)."""
    import tempfile

    from banditops.store.sql import Store

    folder = tempfile.mkdtemp()
    store = Store(f"sqlite:///{folder}/log.db")
    store.migrate()
    scores = dict.fromkeys(FAMILIES, 0.8)
    timed: dict[str, Timed] = {}
    for flag in (False, True):
        timed[f"memory/{flag}"] = (
            lambda flag=flag: deployment(ThompsonSampling(seed=0), models, scores,
                                         log_context=flag),
            lambda d: d.predict_batch(rows))
        timed[f"sql/{flag}"] = (
            lambda flag=flag: deployment(ThompsonSampling(seed=0), models, scores,
                                         log_context=flag, log=store.log("bench", 1e9)),
            lambda d: d.predict_batch(rows))
    best = best_times(timed, repeats)
    store.close()
    return {(name, flag): best[f"{key}/{flag}"]
            for key, name in (("memory", "memory"), ("sql", "SQL (SQLite file)"))
            for flag in (False, True)}


if __name__ == "__main__":
    main()
