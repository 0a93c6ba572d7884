"""Latency and throughput of ``predict`` over HTTP: banditops against the floor of its stack.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/server.py [--seconds 4] [--quick]``).

For each model kind (the scikit-learn model as saved by skops, and the same model exported
to ONNX), three targets are measured in the same run:

- **direct**: the model called in this process on a prepared one-row input;
- **plain**: a plain FastAPI app (``benchmarks/plain_app.py``): one endpoint that parses
  the same JSON body and calls the same artifact, loaded the same way; no routing, no
  database. It is what any FastAPI service around this model would cost at least;
- **banditops**: ``banditops serve`` (SQLite in WAL mode) with two versions of that model
  behind Thompson sampling; every decision is committed to the database before it is
  answered.

Both servers are uvicorn processes started the same way (one worker, 127.0.0.1, log level
warning, no access log, ``OMP_NUM_THREADS=1``). Both run at once (an idle one costs
nothing) and are measured alternately, in ``--rounds`` rounds, so that a slow patch of the
shared machine does not land on one of them only. The load generator speaks HTTP/1.1 over
raw keep-alive sockets so that it costs little next to the servers. Reported:

- p50/p99 at a paced 500 requests/s (one connection); direct: back-to-back calls;
- throughput of one worker with 4 connections kept busy; direct: calls/s in one thread;
- banditops/plain ratios, and banditops's added p99 over the direct call (goal: <= 2 ms);
  throughput goal: >= 2,000 predictions/s per worker with the scikit-learn model.

Features logged (issue 12), same run: two banditops servers of the scikit-learn model, one
with ``log_features = true`` (each decision's ten features kept as JSON in the decisions table,
for off-policy evaluation) and one without, measured alternately, paced and at full load.
Reported: p50/p99, throughput, their ratios (goals: p99 <= 1.10x, throughput >= 0.90x) and the
database bytes per decision of each; and, for reference, a third server routing with linear
Thompson sampling on those features (contextual, so they are logged).

Shadow scoring (issue 9), same run: two more banditops servers with three versions of the
scikit-learn model, one with ``shadow = { mode = "all" }`` (every answered request has the two
other versions predict it afterwards, off the request path) and one without, measured
alternately at the same paced rate. Reported: p50/p99 of each, the p99 ratio on/off (goal:
<= 1.10), and the shadow server's counters (requests shadow-scored and dropped), which show
that the shadow work was done, not skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.linear_model import LogisticRegression
from skops.io import dump

FEATURES = [f"x{i}" for i in range(10)]
KEY = "bench-key-0123456789abcdef"
RATE = 500.0
CONNECTIONS = 4
P99_GOAL_MS = 2.0
THROUGHPUT_GOAL = 2000.0
SHADOW_P99_GOAL = 1.10  # p99 with shadow scoring on / off
FEATURES_P99_GOAL = 1.10  # p99 with every decision's features logged / not
FEATURES_RATE_GOAL = 0.90  # throughput likewise
KINDS = (("skops", "scikit-learn (skops)"), ("onnx", "ONNX export"))
BANDITOPS_PATH = "/v1/deployments/bench/predict"
PLAIN_PATH = "/predict"
HERE = Path(__file__).resolve().parent


class Connection:
    """One keep-alive HTTP/1.1 connection sending the same prepared request."""

    def __init__(self, port: int, path: str, body: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        self.buffer = b""

    def call(self) -> None:
        self.sock.sendall(self.request)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"server answered {head[:40]!r}")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        while len(rest) < length:
            rest += self._recv()
        self.buffer = rest[length:]

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


# ------------------------------------------------------------------ setup
def write_artifacts(folder: Path) -> None:
    """Three logistic regressions (v1, v2, v3) as skops and ONNX files."""
    from skl2onnx import to_onnx

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, len(FEATURES)))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    for name in ("v1", "v2", "v3"):
        model = LogisticRegression().fit(x, y)
        dump(model, folder / f"{name}.skops")
        onnx = to_onnx(model, x[:1].astype(np.float32), options={"zipmap": False})
        (folder / f"{name}.onnx").write_bytes(onnx.SerializeToString())


def write_config(folder: Path, fmt: str, name: str | None = None,
                 versions: tuple[str, ...] = ("v1", "v2"), shadow: str | None = None,
                 log_features: bool = False, policy: str = "thompson") -> Path:
    name = name or f"bench-{fmt}"
    features = ", ".join(f'{f} = "number"' for f in FEATURES)
    path = folder / f"{name}.toml"
    path.write_text(f'''
database = "sqlite:///{folder / f'{name}.db'}"
artifact_dirs = ["{folder}"]
[[api_keys]]
key = "{KEY}"
scope = "client"
[deployments.bench]
policy = "{policy}"
features = {{{features}}}
log_features = {str(log_features).lower()}
{f'shadow = {{ mode = "{shadow}" }}' if shadow else ""}
''' + "".join(f'''
[[deployments.bench.versions]]
name = "{version}"
artifact = "{version}.{fmt}"
''' for version in versions))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server(name: str, command: list[str], env: dict[str, str], folder: Path,
           ready: Callable[[], bool]) -> Iterator[None]:
    """A server process for the duration of the block; killed on the way out, error or not."""
    log = folder / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                   env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    try:
        deadline = time.monotonic() + 60
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                raise SystemExit(f"the {name} server did not start:\n{tail}")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def answers(url: str, body: bytes | None = None) -> bool:
    try:
        if body is None:
            return httpx.get(url, timeout=1).status_code == 200
        return httpx.post(url, content=body, timeout=1,
                          headers={"Content-Type": "application/json"}).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def banditops_server(folder: Path, fmt: str, port: int,
                     config: Path | None = None) -> Iterator[None]:
    config = config or write_config(folder, fmt)
    command = [sys.executable, "-m", "banditops.cli", "serve", "--config", str(config),
               "--port", str(port)]
    with server(f"banditops-{config.stem}", command, {}, folder,
                lambda: answers(f"http://127.0.0.1:{port}/readyz")):
        yield


@contextmanager
def plain_server(folder: Path, fmt: str, port: int, body: bytes) -> Iterator[None]:
    command = [sys.executable, "-m", "uvicorn", "plain_app:app", "--app-dir", str(HERE),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--log-level", "warning", "--no-access-log"]
    env = {"BENCH_ARTIFACT": str(folder / f"v1.{fmt}"), "BENCH_FEATURES": ",".join(FEATURES)}
    with server(f"plain-{fmt}", command, env, folder,
                lambda: answers(f"http://127.0.0.1:{port}{PLAIN_PATH}", body)):
        yield


# ------------------------------------------------------------------ measuring
@dataclass
class Figures:
    """One target's measurements, pooled over rounds."""

    latencies: list[np.ndarray] = field(default_factory=list)  # seconds, one array a round
    rates: list[float] = field(default_factory=list)  # predictions/s, one a round

    @property
    def p50(self) -> float:
        return float(np.percentile(np.concatenate(self.latencies), 50) * 1e3)

    @property
    def p99(self) -> float:
        return float(np.percentile(np.concatenate(self.latencies), 99) * 1e3)

    @property
    def rate(self) -> float:
        return float(np.median(self.rates))

    def summary(self) -> dict[str, Any]:
        return {"p50_ms": self.p50, "p99_ms": self.p99,
                "throughput": self.rate if self.rates else None,
                "p99_ms_per_round": [float(np.percentile(t, 99) * 1e3)
                                     for t in self.latencies],
                "throughput_per_round": self.rates}


def direct(folder: Path, fmt: str, instance: dict[str, float], seconds: float) -> Figures:
    """Back-to-back calls of the model in this process: latency of each, and calls/s."""
    from banditops.service.artifacts import load_artifact

    model = load_artifact(folder / f"v1.{fmt}", [folder], allow_pickle=False).model
    row = np.array([[instance[f] for f in FEATURES]], dtype=float)
    for _ in range(200):  # warm up
        model.predict(row)
    times = []
    started = time.perf_counter()
    end = started + seconds
    while (now := time.perf_counter()) < end:
        model.predict(row)
        times.append(time.perf_counter() - now)
    elapsed = time.perf_counter() - started
    return Figures([np.array(times)], [len(times) / elapsed])


def paced(port: int, path: str, body: bytes, seconds: float) -> np.ndarray:
    """Latency of each request sent at a fixed RATE on one connection."""
    connection = Connection(port, path, body)
    interval, times = 1.0 / RATE, []
    next_at = time.perf_counter()
    end = next_at + seconds
    try:
        while next_at < end:
            wait = next_at - time.perf_counter()
            if wait > 0.0005:
                time.sleep(wait - 0.0004)  # sleep most of the gap: the server needs the cores
            while time.perf_counter() < next_at:
                pass
            started = time.perf_counter()
            connection.call()
            times.append(time.perf_counter() - started)
            next_at += interval
    finally:
        connection.close()
    return np.array(times)


def throughput(port: int, path: str, body: bytes, seconds: float) -> float:
    """Answers per second with CONNECTIONS connections each sending as soon as answered."""
    counts = [0] * CONNECTIONS
    errors: list[BaseException] = []
    stop = time.perf_counter() + seconds

    def run(index: int) -> None:
        try:
            connection = Connection(port, path, body)
            try:
                while time.perf_counter() < stop:
                    connection.call()
                    counts[index] += 1
            finally:
                connection.close()
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CONNECTIONS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"throughput run failed: {errors[0]}")
    return sum(counts) / (time.perf_counter() - started)


def measure_kind(folder: Path, fmt: str, instance: dict[str, float], body: bytes,
                 args: argparse.Namespace) -> dict[str, Figures]:
    figures = {"direct": direct(folder, fmt, instance, args.direct_seconds),
               "plain": Figures(), "banditops": Figures()}
    ports = {"plain": free_port(), "banditops": free_port()}
    paths = {"plain": PLAIN_PATH, "banditops": BANDITOPS_PATH}
    with plain_server(folder, fmt, ports["plain"], body), \
            banditops_server(folder, fmt, ports["banditops"]):
        for target in ("plain", "banditops"):
            paced(ports[target], paths[target], body, args.warmup)
        for round_ in range(args.rounds):
            order = ("plain", "banditops") if round_ % 2 == 0 else ("banditops", "plain")
            for target in order:
                figures[target].latencies.append(
                    paced(ports[target], paths[target], body, args.seconds))
            for target in order:
                figures[target].rates.append(
                    throughput(ports[target], paths[target], body, args.seconds))
    return figures


def shadow_counters(port: int) -> dict[str, float]:
    """The shadow server's counters from /metrics: requests shadow-scored and dropped."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    counters = {}
    for kind in ("scored", "dropped"):
        prefix = f'banditops_shadow_{kind}_total{{deployment="bench"}} '
        line = next((line for line in text.splitlines() if line.startswith(prefix)), None)
        counters[kind] = float(line.split()[-1]) if line else 0.0
    return counters


def measure_shadow(folder: Path, body: bytes, args: argparse.Namespace
                   ) -> tuple[dict[str, Figures], dict[str, float]]:
    """Paced predict latency with shadow scoring off and on (three versions, skops),
    measured alternately; and the shadow server's counters at the end."""
    versions = ("v1", "v2", "v3")
    configs = {"off": write_config(folder, "skops", "bench-shadow-off", versions),
               "on": write_config(folder, "skops", "bench-shadow-on", versions, shadow="all")}
    ports = {target: free_port() for target in configs}
    figures = {target: Figures() for target in configs}
    with banditops_server(folder, "skops", ports["off"], configs["off"]), \
            banditops_server(folder, "skops", ports["on"], configs["on"]):
        for target in configs:
            paced(ports[target], BANDITOPS_PATH, body, args.warmup)
        for round_ in range(args.rounds):
            order = ("off", "on") if round_ % 2 == 0 else ("on", "off")
            for target in order:
                figures[target].latencies.append(
                    paced(ports[target], BANDITOPS_PATH, body, args.seconds))
        counters = shadow_counters(ports["on"])
    return figures, counters


def measure_features(folder: Path, body: bytes, args: argparse.Namespace
                     ) -> dict[str, Figures]:
    """Paced latency and throughput of predict with each decision's features logged
    (``log_features = true``: JSON in decisions.context) and without, measured alternately
    (two versions, skops, Thompson sampling); and the database bytes per decision of each."""
    configs = {"off": write_config(folder, "skops", "bench-features-off"),
               "on": write_config(folder, "skops", "bench-features-on", log_features=True),
               "contextual": write_config(folder, "skops", "bench-features-contextual",
                                          log_features=True, policy="linear-thompson")}
    ports = {target: free_port() for target in configs}
    figures = {target: Figures() for target in configs}
    with banditops_server(folder, "skops", ports["off"], configs["off"]), \
            banditops_server(folder, "skops", ports["on"], configs["on"]), \
            banditops_server(folder, "skops", ports["contextual"], configs["contextual"]):
        for target in configs:
            paced(ports[target], BANDITOPS_PATH, body, args.warmup)
        for round_ in range(args.rounds):
            order = (("off", "on", "contextual") if round_ % 2 == 0
                     else ("contextual", "on", "off"))
            for target in order:
                figures[target].latencies.append(
                    paced(ports[target], BANDITOPS_PATH, body, args.seconds))
            for target in order:
                figures[target].rates.append(
                    throughput(ports[target], BANDITOPS_PATH, body, args.seconds))
    return figures


def decision_bytes(folder: Path, name: str) -> float:
    """Bytes of the database file per logged decision (the WAL moved in first)."""
    import sqlite3

    with sqlite3.connect(folder / f"{name}.db") as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count = connection.execute("SELECT count(*) FROM decisions").fetchone()[0]
    return (folder / f"{name}.db").stat().st_size / max(count, 1)


# ------------------------------------------------------------------ reporting
def verdict(ok: bool) -> str:
    return "[green]met[/green]" if ok else "[bold red]MISSED[/bold red]"


def report(console: Console, label: str, figures: dict[str, Figures]) -> list[tuple]:
    """Print one model kind's table; return its goal rows."""
    d, p, b = figures["direct"], figures["plain"], figures["banditops"]
    table = Table(title=f"predict, logistic regression, {label}")
    table.add_column("target")
    for column in ("p50 ms", "p99 ms", "p99 - direct ms", "predictions/s"):
        table.add_column(column, justify="right")
    table.add_row("(a) model called directly", f"{d.p50:.3f}", f"{d.p99:.3f}", "",
                  f"{d.rate:,.0f}")
    for name, f in (("(b) plain FastAPI", p), ("(c) banditops", b)):
        table.add_row(name, f"{f.p50:.3f}", f"{f.p99:.3f}", f"{f.p99 - d.p99:.3f}",
                      f"{f.rate:,.0f}")
    table.add_row("[bold]banditops / plain[/bold]", f"x{b.p50 / p.p50:.2f}",
                  f"x{b.p99 / p.p99:.2f}", "", f"x{b.rate / p.rate:.2f}")
    console.print(table)
    for name, f in (("plain", p), ("banditops", b)):
        console.print(f"  per round, {name}: p99 "
                      f"{', '.join(f'{np.percentile(t, 99) * 1e3:.2f}' for t in f.latencies)}"
                      f" ms; predictions/s {', '.join(f'{r:,.0f}' for r in f.rates)}")
    console.print()
    added = b.p99 - d.p99
    return [(label, f"added p99 over direct <= {P99_GOAL_MS:g} ms", f"{added:.2f} ms",
             verdict(added <= P99_GOAL_MS)),
            (label, f"throughput >= {THROUGHPUT_GOAL:,.0f}/s, one worker"
             + ("" if label.startswith("scikit") else " *"),
             f"{b.rate:,.0f}/s", verdict(b.rate >= THROUGHPUT_GOAL))]


def report_shadow(console: Console, figures: dict[str, Figures],
                  counters: dict[str, float]) -> list[tuple]:
    """Print the shadow on/off table; return its goal row."""
    off, on = figures["off"], figures["on"]
    table = Table(title="predict with shadow scoring, 3 versions, scikit-learn (skops)")
    for column in ("target", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right" if column != "target" else "left")
    table.add_row("shadow off", f"{off.p50:.3f}", f"{off.p99:.3f}")
    table.add_row('shadow on (mode "all")', f"{on.p50:.3f}", f"{on.p99:.3f}")
    table.add_row("[bold]on / off[/bold]", f"x{on.p50 / off.p50:.2f}", f"x{on.p99 / off.p99:.2f}")
    console.print(table)
    for name, f in (("off", off), ("on", on)):
        console.print(f"  per round, shadow {name}: p99 "
                      f"{', '.join(f'{np.percentile(t, 99) * 1e3:.2f}' for t in f.latencies)}"
                      " ms")
    requests = sum(len(t) for t in on.latencies)
    console.print(f"  shadow server: {counters['scored']:,.0f} requests shadow-scored, "
                  f"{counters['dropped']:,.0f} dropped (warm-up included; {requests:,} measured)")
    console.print()
    ratio = on.p99 / off.p99
    return [("scikit-learn (skops)", f"p99 shadow on / off <= {SHADOW_P99_GOAL:.2f}",
             f"x{ratio:.2f}", verdict(ratio <= SHADOW_P99_GOAL))]


def report_features(console: Console, figures: dict[str, Figures],
                    sizes: dict[str, float]) -> list[tuple]:
    """Print the features logged on/off table; return its goal rows."""
    off, on = figures["off"], figures["on"]
    table = Table(title=f"predict with each decision's features logged ({len(FEATURES)} "
                        "numbers), scikit-learn (skops)")
    for column in ("target", "p50 ms", "p99 ms", "predictions/s", "database bytes/decision"):
        table.add_column(column, justify="right" if column != "target" else "left")
    table.add_row("log_features = false", f"{off.p50:.3f}", f"{off.p99:.3f}",
                  f"{off.rate:,.0f}", f"{sizes['off']:,.0f}")
    table.add_row("log_features = true", f"{on.p50:.3f}", f"{on.p99:.3f}", f"{on.rate:,.0f}",
                  f"{sizes['on']:,.0f}")
    table.add_row("[bold]on / off[/bold]", f"x{on.p50 / off.p50:.2f}",
                  f"x{on.p99 / off.p99:.2f}", f"x{on.rate / off.rate:.2f}",
                  f"x{sizes['on'] / sizes['off']:.2f}")
    ctx = figures["contextual"]
    table.add_row("linear-thompson (contextual), for reference", f"{ctx.p50:.3f}",
                  f"{ctx.p99:.3f}", f"{ctx.rate:,.0f}", f"{sizes['contextual']:,.0f}")
    console.print(table)
    for name, f in (("off", off), ("on", on), ("contextual", ctx)):
        console.print(f"  per round, features {name}: p99 "
                      f"{', '.join(f'{np.percentile(t, 99) * 1e3:.2f}' for t in f.latencies)}"
                      f" ms; predictions/s {', '.join(f'{r:,.0f}' for r in f.rates)}")
    console.print()
    p99, rate = on.p99 / off.p99, on.rate / off.rate
    return [("scikit-learn (skops)", f"p99 features logged / not <= {FEATURES_P99_GOAL:.2f}",
             f"x{p99:.2f}", verdict(p99 <= FEATURES_P99_GOAL)),
            ("scikit-learn (skops)",
             f"throughput features logged / not >= {FEATURES_RATE_GOAL:.2f}",
             f"x{rate:.2f}", verdict(rate >= FEATURES_RATE_GOAL))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="per measurement window (default 4)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating rounds per server (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 s windows, one round")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--shadow-only", action="store_true",
                        help="only the shadow scoring on/off comparison")
    parser.add_argument("--features-only", action="store_true",
                        help="only the features logged on/off comparison")
    args = parser.parse_args()
    args.warmup, args.direct_seconds = 1.0, 2.0
    if args.quick:
        args.seconds, args.rounds, args.warmup, args.direct_seconds = 1.0, 1, 0.3, 0.5
    # SIGTERM unwinds like Ctrl-C, so the servers are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    console = Console(width=max(Console().width, 100))
    instance = {f: float(v) for f, v in zip(FEATURES, np.linspace(-1, 1, len(FEATURES)),
                                              strict=True)}
    body = json.dumps({"features": instance}).encode()
    goals, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_artifacts(folder)
        only = args.shadow_only or args.features_only
        for fmt, label in () if only else KINDS:
            figures = measure_kind(folder, fmt, instance, body, args)
            goals += report(console, label, figures)
            results[fmt] = {name: f.summary() for name, f in figures.items()}
        if not args.features_only:
            shadow, counters = measure_shadow(folder, body, args)
            goals += report_shadow(console, shadow, counters)
            results["shadow"] = {**{name: f.summary() for name, f in shadow.items()},
                                 "counters": counters}
        if not args.shadow_only:
            logged = measure_features(folder, body, args)
            sizes = {target: decision_bytes(folder, f"bench-features-{target}")
                     for target in logged}
            goals += report_features(console, logged, sizes)
            results["features"] = {**{name: f.summary() for name, f in logged.items()},
                                   "bytes_per_decision": sizes}
    table = Table(title=f"goals (paced {RATE:,.0f} req/s; {CONNECTIONS} busy connections)")
    for column in ("model", "goal", "measured", ""):
        table.add_column(column)
    for row in goals:
        table.add_row(*row)
    console.print(table)
    console.print("* the throughput goal is set for the scikit-learn model; shown for reference")
    if args.json:
        args.json.write_text(json.dumps({"seconds": args.seconds, "rounds": args.rounds,
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
