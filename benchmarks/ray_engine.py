"""The experiment on Ray against the local engine: same runs, speed-up, cost per task.

Run: ``make bench-ray`` (or ``.venv/bin/python benchmarks/ray_engine.py [--quick]``).

Runs the default experiment (both datasets, all four scenarios, every strategy, 5 seeds)
three times in one process: the local engine with 2 processes, then a local Ray with 1 and
with 2 CPUs (each run starts and stops its own Ray). Reported, all measured in this run:

- whether ``runs.csv`` is the same on Ray as locally (the text written, and the table bit
  for bit);
- the replay phase's wall time with Ray on 1 CPU against 2 (goal: a speed-up >= 1.6x on
  2 cores), and Ray on 2 CPUs against the local engine;
- Ray's overhead per task: ``(Ray replay wall - local replay wall) / tasks``, both on 2
  CPUs; and, on a fresh local Ray of 2 CPUs, the wall time per no-op task (2,000 submitted
  at once, and one at a time) and per no-op task that receives the largest stream's
  arrays from the object store, as every replay task does.

``--quick`` replays Adult alone with 2 seeds (a smoke run, about a fifth of the work).
The whole default run takes about 8 minutes on 2 cores: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import ray
from rich.console import Console
from rich.table import Table

from banditops.simulation.datasets import load
from banditops.simulation.experiment import ExperimentResult, run_experiment
from banditops.simulation.scenarios import SCENARIOS
from banditops.simulation.settings import default_settings
from banditops.simulation.strategies import STRATEGIES

GOAL_SPEEDUP = 1.6


@dataclass
class Measured:
    name: str
    result: ExperimentResult
    wall: float

    @property
    def replay(self) -> float:
        return self.result.seconds["replay (wall)"]

    @property
    def runs_csv(self) -> str:
        return self.result.runs.to_csv(index=False, float_format="%.6g")  # as write_outputs


@ray.remote
def _noop(payload: object = None) -> None:
    return None


def noop_overheads(stream_shape: tuple[int, int], tasks: int = 2000) -> dict[str, float]:
    """Seconds per no-op task on a local Ray of 2 CPUs, workers warmed up first."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             object_store_memory=512 << 20, logging_level=logging.ERROR, log_to_driver=False)
    try:
        ray.get([_noop.remote() for _ in range(50)])  # start both workers
        started = time.perf_counter()
        ray.get([_noop.remote() for _ in range(tasks)])
        batch = (time.perf_counter() - started) / tasks
        started = time.perf_counter()
        for _ in range(200):
            ray.get(_noop.remote())
        serial = (time.perf_counter() - started) / 200
        versions, n = stream_shape
        stream = ray.put({"predictions": np.zeros((versions, n), np.int8),
                          "rewards": np.zeros((versions, n)), "labels": np.zeros(n, np.int8)})
        ray.get([_noop.remote(stream) for _ in range(50)])
        started = time.perf_counter()
        ray.get([_noop.remote(stream) for _ in range(tasks)])
        with_stream = (time.perf_counter() - started) / tasks
    finally:
        ray.shutdown()
    return {"batch": batch, "serial": serial, "with stream": with_stream}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Adult alone, 2 seeds")
    args = parser.parse_args()
    console = Console()
    os.environ.setdefault("BANDITOPS_DATA_DIR", "../shared/data")
    seeds = 2 if args.quick else 5
    names = ["adult"] if args.quick else ["adult", "vehicle-insurance-fraud"]
    plan = [(data, default_settings(data.name, len(data))) for data in map(load, names)]

    load_before = os.getloadavg()[0]
    measured: list[Measured] = []
    for name, engine, workers in (("local, 2 processes", "local", 2),
                                  ("Ray, 1 CPU", "ray", 1), ("Ray, 2 CPUs", "ray", 2)):
        started = time.perf_counter()
        with console.status(f"default experiment on {name}..."):
            result = run_experiment(plan, scenarios=list(SCENARIOS), seeds=seeds,
                                    workers=workers, engine=engine)
        measured.append(Measured(name, result, time.perf_counter() - started))
        console.print(f"{name}: {measured[-1].wall:.1f} s")
    local, ray1, ray2 = measured
    largest = max(local.result.streams.values(), key=lambda s: s.n)
    with console.status("no-op tasks..."):
        noop = noop_overheads((len(largest.versions), largest.n))

    runs = local.result.runs  # a strategy without randomness is replayed for seed 0 only
    tasks = int(((runs["seed"] == 0) | runs["strategy"].map(
        lambda name: STRATEGIES[name].seeded)).sum())
    table = Table(title=f"Default experiment: {len(names)} dataset(s) x {len(SCENARIOS)} "
                        f"scenarios x {local.result.summary['strategy'].nunique()} strategies "
                        f"x {seeds} seeds ({tasks} replay tasks)")
    for column in ("engine", "engine start", "training (wall)", "replay (wall)",
                   "replay (cpu, summed)", "total (wall)"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for m in measured:
        s = m.result.seconds
        table.add_row(m.name, f"{s['engine start (wall)']:.1f} s", f"{s['training (wall)']:.1f} s",
                      f"{m.replay:.1f} s", f"{s['replay (cpu, summed)']:.1f} s", f"{m.wall:.1f} s")
    console.print(table)
    console.print(f"load average (1 min) before: {load_before:.1f}, after: "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (above ~2, other "
                  "processes share the cores and the ratios below mean little)")

    for m in (ray1, ray2):
        same_text = m.runs_csv == local.runs_csv
        same_bits = m.result.runs.equals(local.result.runs)
        console.print(f"runs.csv on {m.name} identical to local: "
                      f"{'yes' if same_text else 'NO'} (table bit for bit: "
                      f"{'yes' if same_bits else 'NO'}; {len(m.result.runs)} rows)")
    speedup = ray1.replay / ray2.replay
    console.print(f"replay phase, Ray 1 CPU / Ray 2 CPUs: {speedup:.2f}x "
                  f"(goal >= {GOAL_SPEEDUP}x: {'met' if speedup >= GOAL_SPEEDUP else 'NOT met'})")
    console.print(f"replay phase, Ray 2 CPUs / local 2 processes: "
                  f"{ray2.replay / local.replay:.2f}x the local wall time")
    console.print(f"overhead per replay task, (Ray - local) / tasks on 2 CPUs: "
                  f"{(ray2.replay - local.replay) / tasks * 1e3:+.1f} ms "
                  f"(a replay task takes {ray2.result.seconds['replay (cpu, summed)'] / tasks:.2f}"
                  f" s on average)")
    console.print(f"no-op Ray task on 2 CPUs: {noop['batch'] * 1e3:.2f} ms each, 2,000 submitted "
                  f"at once; {noop['serial'] * 1e3:.2f} ms submitted and awaited one at a time; "
                  f"{noop['with stream'] * 1e3:.2f} ms each receiving the largest stream's "
                  f"arrays ({len(largest.versions)} versions x {largest.n:,} rows) by reference")


if __name__ == "__main__":
    main()
