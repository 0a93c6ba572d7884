"""Throughput and latency of ``predict`` over HTTP, against calling the model directly.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/server.py [--seconds 5]``).

A server process (``banditops serve``, SQLite in WAL mode, one worker) serves two
logistic-regression versions behind Thompson sampling; every decision is committed to the
database before it is answered. In the same run the same model is called directly, in
this process, with the same one-row input. The load generator speaks HTTP/1.1 over raw
keep-alive sockets so that it costs little next to the server. Reported:

- latency at a paced 500 requests/s: p50/p99 over HTTP and direct; the difference is the
  router's cost (goal: added p99 at most 2 ms);
- throughput of single-instance predictions with 4 connections kept busy (goal: at least
  2,000/s from one worker).

Both for the scikit-learn model as saved by skops and for the same model exported to ONNX
(scikit-learn spends ~0.2 ms validating a one-row input; onnxruntime ~6 us).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.linear_model import LogisticRegression
from skops.io import dump

FEATURES = [f"x{i}" for i in range(10)]
KEY = "bench-key-0123456789abcdef"


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
            self.buffer += self.sock.recv(65536)
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"server answered {head[:40]!r}")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.buffer = rest[length:]


def start_server(folder: Path, fmt: str) -> tuple[subprocess.Popen, int]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, len(FEATURES)))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    for name in ("v1", "v2"):
        model = LogisticRegression().fit(x, y)
        dump(model, folder / f"{name}.skops")
        from skl2onnx import to_onnx

        onnx = to_onnx(model, x[:1].astype(np.float32), options={"zipmap": False})
        (folder / f"{name}.onnx").write_bytes(onnx.SerializeToString())
    features = ", ".join(f'{f} = "number"' for f in FEATURES)
    (folder / "bench.toml").write_text(f'''
database = "sqlite:///{folder / 'bench.db'}"
artifact_dirs = ["{folder}"]
[[api_keys]]
key = "{KEY}"
scope = "client"
[deployments.bench]
policy = "thompson"
features = {{{features}}}
[[deployments.bench.versions]]
name = "v1"
artifact = "v1.{fmt}"
[[deployments.bench.versions]]
name = "v2"
artifact = "v2.{fmt}"
''')
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "banditops.cli", "serve", "--config", str(folder / "bench.toml"),
         "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process, port
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


def direct_latencies(folder: Path, fmt: str, instance: dict[str, float], n: int
                     ) -> np.ndarray:
    from banditops.service.artifacts import load_artifact

    model = load_artifact(folder / f"v1.{fmt}", [folder], allow_pickle=False)
    row = np.array([[instance[f] for f in FEATURES]])
    times = []
    for _ in range(n):
        started = time.perf_counter()
        model.predict(row)
        times.append(time.perf_counter() - started)
    return np.array(times)


def paced(port: int, body: bytes, rate: float, seconds: float) -> np.ndarray:
    connection = Connection(port, "/v1/deployments/bench/predict", body)
    interval, times = 1.0 / rate, []
    next_at = time.perf_counter()
    end = next_at + seconds
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
    return np.array(times)


def throughput(port: int, body: bytes, connections: int, seconds: float) -> float:
    counts = [0] * connections
    stop = time.perf_counter() + seconds

    def run(index: int) -> None:
        connection = Connection(port, "/v1/deployments/bench/predict", body)
        while time.perf_counter() < stop:
            connection.call()
            counts[index] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    args = parser.parse_args()
    console = Console()
    instance = {f: float(v) for f, v in zip(FEATURES, np.linspace(-1, 1, len(FEATURES)),
                                              strict=True)}
    body = json.dumps({"features": instance}).encode()
    for fmt, label in (("skops", "scikit-learn (skops)"), ("onnx", "ONNX export")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            process, port = start_server(folder, fmt)
            try:
                paced(port, body, 500, 1.0)  # warm up
                http = paced(port, body, 500, args.seconds)
                direct = direct_latencies(folder, fmt, instance, len(http))
                rps = throughput(port, body, 4, args.seconds)
            finally:
                process.terminate()
                process.wait()
        report(console, f"logistic regression, {label}", http, direct, rps)


def report(console: Console, label: str, http: np.ndarray, direct: np.ndarray,
           rps: float) -> None:
    p = {name: (np.percentile(values, 50) * 1e3, np.percentile(values, 99) * 1e3)
         for name, values in (("http", http), ("direct", direct))}
    added = (p["http"][0] - p["direct"][0], p["http"][1] - p["direct"][1])
    table = Table(title=f"predict, {label}: HTTP through banditops vs the model called "
                        "directly")
    for column in ("measure", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    table.add_row("over HTTP at 500 req/s", f"{p['http'][0]:.3f}", f"{p['http'][1]:.3f}")
    table.add_row("model called directly", f"{p['direct'][0]:.3f}", f"{p['direct'][1]:.3f}")
    table.add_row("[bold]added by the router[/bold]", f"{added[0]:.3f}", f"{added[1]:.3f}")
    console.print(table)
    console.print(f"latency ratio http/direct: p50 x{p['http'][0] / p['direct'][0]:.1f}, "
                  f"p99 x{p['http'][1] / p['direct'][1]:.1f}")
    console.print(f"added p99 {added[1]:.2f} ms (goal <= 2 ms): "
                  f"{'met' if added[1] <= 2 else 'MISSED'}")
    console.print(f"throughput, 4 connections, one worker: {rps:,.0f} predictions/s "
                  f"(goal >= 2,000: {'met' if rps >= 2000 else 'MISSED'}); the model alone "
                  f"would allow {1 / np.median(direct):,.0f}/s\n")


if __name__ == "__main__":
    main()
