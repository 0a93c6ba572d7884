"""How long the default replay experiment takes, and where the time goes.

Run: ``.venv/bin/python benchmarks/experiment.py [--quick]``; ``--scale`` instead measures
how the cost of a replay grows with the table (below).

Runs the default experiment (both datasets, all four scenarios, every strategy, 5 seeds,
2 processes) and splits its time into training the versions, predicting once per version,
and replaying. Absolute times drift on a shared machine, so the replay is also compared,
in the same run, with a baseline: the same requests served by a bare loop that reads each
precomputed prediction and scores it, with no policy, no Deployment and no feedback. The
ratio is what routing every request through the production code path costs.

``--scale`` replays synthetic tables of 100,000 to 1,000,000 rows (written as CSV and read
back through ``load_csv``, as a user's table would be), each in a fresh process: reading,
training the versions, and replaying the recommended strategy over every row. It prints the
time per 100,000 rows of each phase and the process's peak memory, and checks that the time
per row stays flat (within 1.5x) from the smallest table to the largest.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from banditops.simulation.datasets import load
from banditops.simulation.experiment import run_experiment
from banditops.simulation.scenarios import SCENARIOS
from banditops.simulation.settings import default_settings
from banditops.simulation.stream import prepare_stream

GOAL_SECONDS = 180.0
SCALE_SIZES = (100_000, 250_000, 500_000, 1_000_000)
FLAT_GOAL = 1.5  # time per row at the largest size / at the smallest, at most


def synthetic_table(n: int, seed: int = 0) -> pd.DataFrame:
    """A table like a user's: numbers, categories, a date, and a binary target whose
    relationship to the features drifts slowly over time."""
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(n, 6))
    frame = pd.DataFrame(numbers, columns=[f"x{i}" for i in range(6)]).round(4)
    frame["region"] = rng.choice(["north", "south", "east", "west", "centre"], n)
    frame["product"] = rng.choice([f"p{i}" for i in range(20)], n)
    frame["when"] = (pd.Timestamp("2020-01-01") + pd.to_timedelta(
        np.sort(rng.uniform(0, 3 * 365, n)), unit="D")).strftime("%Y-%m-%d %H:%M")
    drift = np.linspace(-1.0, 1.0, n)
    score = (numbers[:, 0] + 0.5 * numbers[:, 1] * drift - 0.7 * numbers[:, 2]
             + (frame["region"] == "north").to_numpy() + rng.normal(0, 1, n))
    frame["bought"] = (score > 0.8).astype(int)
    return frame


def scale_one(path: Path) -> dict[str, float]:
    """Read, train and replay one table (run in its own process: its peak is the table's)."""
    from banditops.simulation.metrics import evaluate
    from banditops.simulation.replay import replay
    from banditops.simulation.strategies import RECOMMENDED, STRATEGIES
    from banditops.simulation.tables import load_csv

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = {}
    began = time.perf_counter()
    data, _ = load_csv(path, "bought", order_by=["when"])
    times["read"] = time.perf_counter() - began
    began = time.perf_counter()
    settings = default_settings(data.name, len(data))
    stream = prepare_stream(data.name, data.features, data.labels.to_numpy(), "natural",
                            settings)
    times["train"] = time.perf_counter() - began
    began = time.perf_counter()
    metrics, _ = evaluate(stream, replay(stream, STRATEGIES[RECOMMENDED], 0))
    times["replay"] = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"rows": len(data), **times, "peak_mb": peak / 1024, "base_mb": base / 1024,
            "versions": len(stream.versions), "reward": metrics.mean_reward}


def scale(sizes: tuple[int, ...], console: Console) -> None:
    """Each size in a fresh process, so peak memory is that size's own."""
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "table.csv"
            with console.status(f"writing a synthetic table of {n:,} rows..."):
                synthetic_table(n).to_csv(path, index=False)
            with console.status(f"reading, training and replaying {n:,} rows..."):
                output = subprocess.run(
                    [sys.executable, __file__, "--scale-one", str(path)], check=True,
                    capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        console.print(f"{n:,} rows done")
    table = Table(title="Replay cost as the table grows (recommended strategy, natural "
                        "scenario; seconds and MB per 100,000 rows)")
    for column in ("rows", "versions", "read", "train", "replay", "total", "per 100k rows",
                   "peak MB", "MB per 100k rows"):
        table.add_column(column, justify="right")
    for row in rows:
        per = 100_000 / row["rows"]
        total = row["read"] + row["train"] + row["replay"]
        table.add_row(f"{row['rows']:,}", f"{row['versions']}", f"{row['read']:.1f}",
                      f"{row['train']:.1f}", f"{row['replay']:.1f}", f"{total:.1f}",
                      f"{total * per:.2f} s", f"{row['peak_mb']:.0f}",
                      f"{(row['peak_mb'] - row['base_mb']) * per:.0f}")
    console.print(table)
    first, last = rows[0], rows[-1]

    def per_row(row: dict) -> float:
        return (row["read"] + row["train"] + row["replay"]) / row["rows"]

    ratio = per_row(last) / per_row(first)
    verdict = "met" if ratio <= FLAT_GOAL else "MISSED"
    console.print(f"time per row at {last['rows']:,} rows / at {first['rows']:,} rows: "
                  f"x{ratio:.2f} (goal: at most x{FLAT_GOAL}) -> {verdict}")


def bare_loop_seconds_per_request(requests: int = 300_000) -> float:
    """A lower bound for a replay: look up a prediction, score it, move on."""
    data = load("adult")
    stream = prepare_stream("adult", data.features.iloc[:12_000],
                            data.labels.to_numpy()[:12_000], "natural",
                            default_settings("adult", 12_000))
    lookup = stream.predictions[0].tolist()
    labels = stream.labels.tolist()
    n, start = stream.n, stream.start
    began = time.perf_counter()
    total, row = 0.0, start
    for _ in range(requests):
        total += 1.0 if lookup[row] == labels[row] else 0.0
        row = row + 1 if row + 1 < n else start
    return (time.perf_counter() - began) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds instead of 5")
    parser.add_argument("--scale", action="store_true",
                        help="measure replay cost on synthetic tables of 100k-1M rows")
    parser.add_argument("--sizes", default=",".join(map(str, SCALE_SIZES)),
                        help="with --scale: comma-separated row counts")
    parser.add_argument("--scale-one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    console = Console(width=max(Console().width, 120))
    if args.scale_one:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # as in the experiment's worker processes
            print(json.dumps(scale_one(args.scale_one)))
        return
    if args.scale:
        scale(tuple(int(n) for n in args.sizes.split(",")), console)
        return
    os.environ.setdefault("BANDITOPS_DATA_DIR", "../shared/data")
    seeds = 2 if args.quick else 5
    plan = [(data, default_settings(data.name, len(data)))
            for data in (load("adult"), load("vehicle-insurance-fraud"))]
    started = time.perf_counter()
    with console.status("running the default experiment..."):
        result = run_experiment(plan, scenarios=list(SCENARIOS), seeds=seeds, workers=2)
    wall = time.perf_counter() - started
    bare = bare_loop_seconds_per_request()
    s = result.seconds
    requests = s["requests replayed"]
    replay_per_request = s["replay (cpu, summed)"] / requests

    table = Table(title=f"Default experiment: 2 datasets x {len(SCENARIOS)} scenarios x "
                        f"{result.summary['strategy'].nunique()} strategies x {seeds} seeds")
    for column in ("phase", "seconds", "share of cpu"):
        table.add_column(column, justify="right" if column != "phase" else "left")
    cpu = {"fitting versions": s["fitting versions (cpu, summed)"],
           "predicting (once per version)": s["predicting once per version (cpu, summed)"],
           "replaying through Deployment": s["replay (cpu, summed)"]}
    for phase, seconds in cpu.items():
        table.add_row(f"{phase} (cpu)", f"{seconds:.1f}", f"{seconds / sum(cpu.values()):.0%}")
    table.add_row("training phase (wall)", f"{s['training (wall)']:.1f}", "")
    table.add_row("replay phase (wall)", f"{s['replay (wall)']:.1f}", "")
    table.add_row("[bold]total (wall)[/bold]", f"[bold]{wall:.1f}[/bold]", "")
    console.print(table)
    console.print(f"requests replayed: {requests:,.0f}; {replay_per_request * 1e6:.2f} µs per "
                  f"request routed (policy, Deployment, delayed feedback, guardrail) against "
                  f"{bare * 1e6:.3f} µs for the bare loop: x{replay_per_request / bare:.0f}")
    verdict = "met" if wall <= GOAL_SECONDS else "MISSED"
    console.print(f"goal: at most {GOAL_SECONDS:.0f} s on 2 cores -> {verdict} "
                  f"({wall / GOAL_SECONDS:.0%} of the budget)")
    if args.quick:
        console.print("(--quick: 2 seeds; the goal is for 5)")


if __name__ == "__main__":
    main()
