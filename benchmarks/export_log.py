"""Exporting the decision log (``banditops export-log``, ``GET .../decisions/export``): rows
per second, bytes per decision and peak memory, Parquet and CSV, SQLite or PostgreSQL.

Run: ``.venv/bin/python benchmarks/export_log.py [--rows 200000] [--db URL]``

A log like the service's is written first: ``--rows`` decisions of two versions with ten
numeric and two string features each (``log_features``), feedback for four in five, a shadow
reward for half. Then each format is exported twice (the best time counts), the file read
back to check its row count. Peak memory is the process's resident set growth during an
export (``ru_maxrss``, measured in a fresh child process per export): it should stay flat as
``--rows`` grows, since rows are read and written one chunk at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from banditops.store.log import Closing, LoggedDecision
from banditops.store.sql import Store

DEPLOYMENT = "bench"


def fill(url: str, rows: int, seed: int = 0) -> None:
    """``rows`` decisions with features, feedback and shadow rewards, in batches."""
    rng = random.Random(seed)
    store = Store(url)
    store.migrate()
    store.add_version(DEPLOYMENT, "v1", "/m/v1.skops", 0.8, "0" * 64)
    store.add_version(DEPLOYMENT, "v2", "/m/v2.skops", 0.7, "1" * 64)
    store.add_event(DEPLOYMENT, 0.0, "registered", "v1", "bench", {"status": "live"})
    store.add_event(DEPLOYMENT, 0.0, "registered", "v2", "bench", {"status": "live"})
    log = store.log(DEPLOYMENT, 1e12)
    start = 1.7e9
    for offset in range(0, rows, 5000):
        batch = []
        for i in range(offset, min(offset + 5000, rows)):
            served = "v1" if rng.random() < 0.6 else "v2"
            other = "v2" if served == "v1" else "v1"
            context = {f"x{j}": round(rng.gauss(0, 1), 6) for j in range(10)}
            context |= {"city": rng.choice(["paris", "lyon", "nice"]),
                        "plan": rng.choice(["free", "pro"])}
            shadows = ((other, 1),) if i % 2 else ()
            batch.append(LoggedDecision(f"{i:032x}", served, 1, 0.6 if served == "v1" else 0.4,
                                        start + i * 0.01, None, shadows, context))
        log.record(batch)
        found = log.lookup_many([d.id for d in batch if int(d.id, 16) % 5], 1e12)
        log.close([Closing(d, 1, float(rng.random() < 0.7),
                           tuple((n, float(rng.random() < 0.6)) for n, _ in d.shadows))
                   for d in found.values()], start + offset * 0.01 + 60)
    store.close()


CHILD = """
import json, resource, sys, time
from banditops.store.export import export_log
from banditops.store.sql import Store
url, path = sys.argv[1], sys.argv[2]
store = Store(url)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
plan = export_log(store, "bench", path)
seconds = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": plan.rows, "seconds": seconds, "rss_mb": (after - before) / 1024}))
"""


def export_once(url: str, path: Path) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, url, str(path)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="decisions (200,000)")
    parser.add_argument("--db", help="a database URL to fill (default: a temporary SQLite)")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many (2)")
    args = parser.parse_args()
    console = Console(width=120)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = args.db or f"sqlite:///{folder / 'log.db'}"
        started = time.perf_counter()
        fill(url, args.rows)
        console.print(f"filled {args.rows:,} decisions in {time.perf_counter() - started:.1f} s")
        table = Table(title=f"export of {args.rows:,} decisions (12 features, feedback on 4 in "
                            f"5, shadow rewards on half), {url.split(':')[0]}")
        for column in ("format", "seconds", "decisions/s", "bytes/decision", "file MB",
                       "peak RSS growth MB"):
            table.add_column(column, justify="right" if column != "format" else "left")
        import pandas as pd

        for fmt in ("parquet", "csv"):
            path = folder / f"log.{fmt}"
            runs = [export_once(url, path) for _ in range(args.repeats)]
            best = min(runs, key=lambda r: r["seconds"])
            read = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
            assert len(read) == best["rows"] == args.rows, (len(read), best)
            size = path.stat().st_size
            table.add_row(fmt, f"{best['seconds']:.2f}", f"{args.rows / best['seconds']:,.0f}",
                          f"{size / args.rows:.1f}", f"{size / 1e6:.1f}",
                          f"{max(r['rss_mb'] for r in runs):.0f}")
        console.print(table)


if __name__ == "__main__":
    main()
