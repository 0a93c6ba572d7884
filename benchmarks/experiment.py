"""How long the default replay experiment takes, and where the time goes.

Run: ``make bench-experiment`` (or ``.venv/bin/python benchmarks/experiment.py [--quick]``).

Runs the default experiment (both datasets, all four scenarios, every strategy, 5 seeds,
2 processes) and splits its time into training the versions, predicting once per version,
and replaying. Absolute times drift on a shared machine, so the replay is also compared,
in the same run, with a baseline: the same requests served by a bare loop that reads each
precomputed prediction and scores it, with no policy, no Deployment and no feedback. The
ratio is what routing every request through the production code path costs.
"""

from __future__ import annotations

import argparse
import os
import time

from rich.console import Console
from rich.table import Table

from banditops.simulation.datasets import load
from banditops.simulation.experiment import run_experiment
from banditops.simulation.scenarios import SCENARIOS
from banditops.simulation.settings import default_settings
from banditops.simulation.stream import prepare_stream

GOAL_SECONDS = 180.0


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
    args = parser.parse_args()
    console = Console()
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
