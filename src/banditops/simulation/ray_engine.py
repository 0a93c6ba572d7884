"""The experiment on Ray: the local engine's tasks, spread over a Ray cluster.

The training phase runs one Ray task per (dataset, scenario), each dataset put in Ray's
object store once. Every stream a task builds stays in the object store, and the replay
tasks receive its reference: a stream is stored once, whatever the number of replays, and a
worker reads its arrays in place (no copy on the same machine). Tasks run one thread each,
as in the local processes, so both engines give the same runs.

Without ``address`` a local Ray starts with ``workers`` CPUs and a modest object store, and
stops at the end; with one (``HOST:PORT`` or ``auto``) the run joins that cluster, uses all
its CPUs and leaves it running. Every node needs banditops installed; data is read on the
driver only.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import ray
from ray.exceptions import RayTaskError

from banditops.errors import BanditOpsError
from banditops.simulation.datasets import Dataset
from banditops.simulation.experiment import (
    BuildTask,
    Progress,
    RunTask,
    Skipped,
    build_stream,
    replay_task,
)
from banditops.simulation.stream import Stream, StreamSettings

OBJECT_STORE_BYTES = 1 << 30  # a local Ray's share of memory: streams are a few MB each

_threads_limited = False


def _one_thread() -> None:
    """One BLAS/OpenMP thread per worker process, as in the local engine's processes."""
    global _threads_limited
    if not _threads_limited:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        _threads_limited = True


def _build_on_worker(dataset: Dataset, scenario: str, settings: StreamSettings,
                     seed: int) -> Stream | Skipped:
    _one_thread()
    return build_stream((dataset, scenario, settings, seed))


def _replay_on_worker(stream: Stream, task: RunTask) -> dict:
    _one_thread()
    return replay_task(stream, task)


def check_address(address: str, timeout: float = 5.0) -> None:
    """``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``, or a clear error before any data is
    read; fail in seconds where nothing listens (Ray itself retries for minutes)."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or "://" in target or not 0 < int(port) < 65536:
        raise BanditOpsError(
            f"--address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise BanditOpsError(
            f"no Ray cluster answers at {address} ({error.strerror or error}); start one "
            "there with `ray start --head`, or fix --address") from None


class RayEngine:
    """Runs :func:`~banditops.simulation.experiment.build_stream` and
    :func:`~banditops.simulation.experiment.replay_task` as Ray tasks (one CPU each)."""

    def __init__(self, workers: int, address: str | None = None) -> None:
        self.workers = workers
        self.address = address
        self._started = False  # whether we started Ray, and so stop it
        self._streams: dict[tuple[str, str], ray.ObjectRef] = {}

    def __enter__(self) -> RayEngine:
        if ray.is_initialized():  # a caller's own Ray session: use it, leave it running
            return self
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            if self.address is None:
                ray.init(address="local", num_cpus=self.workers, include_dashboard=False,
                         object_store_memory=OBJECT_STORE_BYTES,
                         logging_level=logging.ERROR, log_to_driver=False)
            else:
                ray.init(address=self.address, logging_level=logging.ERROR,
                         log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
            raise BanditOpsError(f"cannot start or reach {where}: "
                                 f"{' '.join(str(error).split())}") from None
        self._started = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._streams.clear()
        if self._started:
            ray.shutdown()
            self._started = False

    def build(self, tasks: list[BuildTask], progress: Progress | None
              ) -> list[Stream | Skipped]:
        task = ray.remote(_build_on_worker)
        datasets: dict[int, ray.ObjectRef] = {}
        refs = []
        for dataset, scenario, settings, seed in tasks:
            if id(dataset) not in datasets:
                datasets[id(dataset)] = ray.put(dataset)
            refs.append(task.remote(datasets[id(dataset)], scenario, settings, seed))
        built: list[Stream | Skipped] = _gather(refs, "training", progress)
        for ref, stream in zip(refs, built, strict=True):
            if isinstance(stream, Stream):
                self._streams[(stream.dataset, stream.scenario)] = ref
        return built

    def replay(self, streams: dict[tuple[str, str], Stream], tasks: list[RunTask],
               progress: Progress | None) -> list[dict]:
        for key, stream in streams.items():  # streams built elsewhere: store them once
            if key not in self._streams:
                self._streams[key] = ray.put(stream)
        task = ray.remote(_replay_on_worker)
        refs = [task.remote(self._streams[run[0]], run) for run in tasks]
        return _gather(refs, "replaying", progress)


def _gather(refs: list[ray.ObjectRef], phase: str, progress: Progress | None) -> list:
    """The tasks' results in task order, reporting progress as they finish. A task's error
    is raised as itself (a user's mistake stays one line), the remote traceback chained."""
    if progress:
        progress(phase, 0, len(refs))
    results: dict[ray.ObjectRef, Any] = {}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        try:
            results.update(zip(ready, ray.get(ready), strict=True))
        except RayTaskError as error:
            for ref in pending:  # a cluster would go on running them
                ray.cancel(ref)
            raise error.cause from error
        if progress:
            progress(phase, len(results), len(refs))
    return [results[ref] for ref in refs]
