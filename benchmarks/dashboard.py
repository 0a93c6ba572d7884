"""The dashboard's cost: first-load weight and time, and what refreshing dashboards add to
predict's p99.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/dashboard.py [--seconds 4] [--quick]``).

One ``banditops serve`` (SQLite in WAL mode, two versions of the scikit-learn model behind
Thompson sampling, as in ``benchmarks/server.py``), first given a few thousand labelled
decisions so that the history has something to draw. Then:

- **first load**: Debian's Chromium under Playwright opens ``/dashboard`` in a fresh context
  (empty cache) with the key already in ``sessionStorage``, until the page has drawn its
  first data (HTML + script + styles + the deployment, history and events answers). Bytes are
  what came over the wire (headers and encoded bodies); time is the browser's own, from the
  start of navigation to the page's ``banditops:first-data`` performance mark (set once the
  first answers are drawn); the time Playwright sees (its round trips to the browser
  included) is shown next to it. Repeated ``--loads`` times; the worst is reported. Goals:
  < 500 KB, < 1 s.
- **refresh cost**: predict latency paced at 500 requests/s on one connection (the load
  generator of ``server.py``), with and without ``--dashboards`` pollers each making the
  page's requests every 2 s (deployment report with ``max_age=2``, history, new events;
  the page itself refreshes every 3 s, so this is harsher), in a process of their
  own so they do not share the load generator's interpreter lock. Alternate rounds on the same
  server; goal: p99 with / without <= 1.05.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table
from server import (
    BANDITOPS_PATH,
    FEATURES,
    KEY,
    RATE,
    Figures,
    banditops_server,
    free_port,
    paced,
    verdict,
    write_artifacts,
    write_config,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser import chromium  # the tests' Chromium launcher

BYTES_GOAL = 500 * 1024
SECONDS_GOAL = 1.0
P99_GOAL = 1.05
POLL_SECONDS = 2.0
DEPLOYMENT = "/v1/deployments/bench"
HISTORY = DEPLOYMENT + "/history?minutes=15&buckets=60"  # what the page asks by default


def prefill(port: int, n: int) -> None:
    """``n`` decisions with their labels, so the charts and counts have data."""
    rng = np.random.default_rng(1)
    url = f"http://127.0.0.1:{port}{DEPLOYMENT}"
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
        for _ in range(n // 100):
            x = rng.normal(size=(100, len(FEATURES)))
            answer = http.post(f"{url}/predict", json={"instances": [
                dict(zip(FEATURES, map(float, row), strict=True)) for row in x]})
            answer.raise_for_status()
            labels = [{"decision_id": d["decision_id"], "label": int(row[0] + row[1] > 0)}
                      for d, row in zip(answer.json()["decisions"], x, strict=True)]
            http.post(f"{url}/feedback", json=labels).raise_for_status()


def first_loads(port: int, loads: int) -> list[dict[str, float]]:
    """Bytes, requests and seconds of each first load of the page, in fresh contexts."""
    url = f"http://127.0.0.1:{port}/dashboard"
    figures = []
    with chromium() as browser:
        for _ in range(loads):
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.add_init_script(f"sessionStorage.setItem('banditops.key', '{KEY}')")
            page = context.new_page()
            finished = []
            page.on("requestfinished", lambda request, into=finished: into.append(request))
            started = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("body[data-loaded='1']", timeout=30_000)
            seconds = time.perf_counter() - started
            drawn = page.evaluate(
                "performance.getEntriesByName('banditops:first-data')[0].startTime") / 1e3
            sizes = [request.sizes() for request in finished]
            figures.append({
                "seconds": drawn, "driver_seconds": seconds, "requests": len(sizes),
                "bytes": sum(s["responseBodySize"] + s["responseHeadersSize"] for s in sizes),
                "body_bytes": sum(s["responseBodySize"] for s in sizes)})
            context.close()
    return figures


def poll(port: int, dashboards: int, stop) -> None:
    """``dashboards`` pages' worth of refreshes every POLL_SECONDS, until ``stop`` is set."""
    base = f"http://127.0.0.1:{port}"
    http = httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    since = [0] * dashboards
    next_at = [time.monotonic() + POLL_SECONDS * i / dashboards for i in range(dashboards)]
    while not stop.is_set():
        i = int(np.argmin(next_at))
        stop.wait(max(0.0, next_at[i] - time.monotonic()))
        http.get(f"{base}{DEPLOYMENT}?max_age=2").raise_for_status()
        http.get(f"{base}{HISTORY}").raise_for_status()
        events = http.get(f"{base}{DEPLOYMENT}/events?since={since[i]}&limit=1000").json()
        if events["events"]:
            since[i] = events["events"][-1]["seq"] + 1
        next_at[i] += POLL_SECONDS
    http.close()


def refresh_cost(port: int, body: bytes, args: argparse.Namespace) -> dict[str, Figures]:
    figures = {"without": Figures(), "with": Figures()}
    paced(port, BANDITOPS_PATH, body, args.warmup)
    for round_ in range(args.rounds):
        order = ("without", "with") if round_ % 2 == 0 else ("with", "without")
        for target in order:
            stop = multiprocessing.Event()
            pollers = None
            if target == "with":
                pollers = multiprocessing.Process(target=poll,
                                                  args=(port, args.dashboards, stop))
                pollers.start()
                time.sleep(POLL_SECONDS)  # every dashboard has made its first refresh
            figures[target].latencies.append(paced(port, BANDITOPS_PATH, body, args.seconds))
            if pollers is not None:
                stop.set()
                pollers.join(30)
                if pollers.exitcode != 0:
                    raise SystemExit("the dashboard pollers failed")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=4,
                        help="alternating rounds with and without dashboards (default 4)")
    parser.add_argument("--dashboards", type=int, default=5)
    parser.add_argument("--loads", type=int, default=5, help="first loads measured")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s windows")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    args.warmup = 1.0
    if args.quick:
        args.seconds, args.rounds, args.warmup, args.loads = 1.0, 2, 0.3, 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    console = Console(width=max(Console().width, 100))
    instance = {f: float(v) for f, v in zip(FEATURES, np.linspace(-1, 1, len(FEATURES)),
                                              strict=True)}
    body = json.dumps({"features": instance}).encode()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_artifacts(folder)
        port = free_port()
        with banditops_server(folder, "skops", port, write_config(folder, "skops")):
            prefill(port, 3000)
            loads = first_loads(port, args.loads)
            figures = refresh_cost(port, body, args)

    table = Table(title=f"dashboard first load ({args.loads} fresh loads, Chromium)")
    for column in ("load", "requests", "bytes transferred", "of which bodies",
                   "s to data drawn", "s seen by the driver"):
        table.add_column(column, justify="right")
    for i, load in enumerate(loads, 1):
        table.add_row(str(i), str(load["requests"]), f"{load['bytes']:,}",
                      f"{load['body_bytes']:,}", f"{load['seconds']:.3f}",
                      f"{load['driver_seconds']:.3f}")
    console.print(table)
    without, with_ = figures["without"], figures["with"]
    table = Table(title=f"predict paced at {RATE:,.0f} req/s, with and without "
                        f"{args.dashboards} dashboards refreshing every {POLL_SECONDS:g} s")
    for column in ("target", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right" if column != "target" else "left")
    table.add_row("without dashboards", f"{without.p50:.3f}", f"{without.p99:.3f}")
    table.add_row("with dashboards", f"{with_.p50:.3f}", f"{with_.p99:.3f}")
    table.add_row("[bold]with / without[/bold]", f"x{with_.p50 / without.p50:.2f}",
                  f"x{with_.p99 / without.p99:.2f}")
    console.print(table)
    for name, f in (("without", without), ("with", with_)):
        console.print(f"  per round, {name}: p99 "
                      f"{', '.join(f'{np.percentile(t, 99) * 1e3:.2f}' for t in f.latencies)} ms")
    worst_bytes = max(load["bytes"] for load in loads)
    worst_seconds = max(load["seconds"] for load in loads)
    ratio = with_.p99 / without.p99
    goals = Table(title="goals")
    for column in ("goal", "measured", ""):
        goals.add_column(column)
    goals.add_row("first load < 500 KB", f"{worst_bytes / 1024:.1f} KB (worst)",
                  verdict(worst_bytes < BYTES_GOAL))
    goals.add_row("first load < 1 s", f"{worst_seconds:.3f} s (worst; median "
                  f"{statistics.median(load['seconds'] for load in loads):.3f})",
                  verdict(worst_seconds < SECONDS_GOAL))
    goals.add_row(f"predict p99 with / without dashboards <= {P99_GOAL:.2f}", f"x{ratio:.3f}",
                  verdict(ratio <= P99_GOAL))
    console.print(goals)
    if args.json:
        args.json.write_text(json.dumps({"loads": loads, "without": without.summary(),
                                         "with": with_.summary()}, indent=2))


if __name__ == "__main__":
    main()
