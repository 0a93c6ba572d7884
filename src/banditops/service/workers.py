"""One worker thread per deployment: the only thread that calls its ``ServiceDeployment``.

The event loop never calls a model or the database: it submits a job to the deployment's
bounded queue and awaits the job's future. A full queue is an
:class:`~banditops.errors.OverloadedError` (503 with ``Retry-After``) at once, so a slow model
or a stalled database cannot make requests pile up without bound.

Micro-batching: when the worker takes a predict job it also takes the predict jobs queued
right behind it (up to ``micro_batch`` instances in all) and routes them in ONE
``ServiceDeployment.predict`` call (one model call per version, one database commit), then
hands each request its slice of the answers.

Shadow work (issue 9): once a predict job is answered, its requests go to the deployment's
shadow queue (at most ``shadow_queue`` requests; beyond that they are dropped and counted),
which the worker drains through ``ServiceDeployment.shadow`` only when no job is waiting and
it has been idle for ``SHADOW_PAUSE_SECONDS`` (the event loop sends the answers first): all
that waits, up to ``micro_batch`` requests, in one call (one model call per shadow version,
one transaction). At a low rate that is each request on its own, right after its answer and
before the next request; when requests come faster, more of them wait and the batches grow,
which costs less per request. (Waiting on purpose to gather bigger batches was measured to
be worse: a longer batch is more likely to be running when a request arrives, and p99 pays
for it.) A request never waits for shadow work except for the one micro-batch that may be
running when it arrives. Shadow calls stay on this thread: the Deployment is not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from banditops.errors import OverloadedError
from banditops.service.runtime import ServiceDeployment
from banditops.store.sql import Store

log = logging.getLogger("banditops.service")


@dataclass
class _Job:
    future: asyncio.Future | None  # None: nobody awaits the result (shutdown snapshot)
    loop: asyncio.AbstractEventLoop | None
    call: Callable[[ServiceDeployment], Any] | None = None  # any method call, or ...
    instances: list[dict[str, Any]] = field(default_factory=list)  # ... a predict job
    owners: list[str | None] = field(default_factory=list)


_STOP = object()
_SHADOW = object()  # _take's answer when only shadow work is waiting
SHADOW_PAUSE_SECONDS = 0.0003  # idle this long before shadow work (answers go out first)


class Worker:
    """A thread consuming one deployment's job queue (at most ``max_queue`` waiting)."""

    def __init__(self, deployment: ServiceDeployment, *, max_queue: int,
                 micro_batch: int, shadow_queue: int = 10_000,
                 on_shadow: Callable[[int, int], None] | None = None) -> None:
        """``on_shadow(dropped, scored)`` is told of each change of the shadow counters."""
        self.deployment = deployment
        self.max_queue = max_queue
        self.micro_batch = micro_batch
        self.shadow_queue = shadow_queue
        self.on_shadow = on_shadow
        self.live_versions: tuple[str, ...] = ()  # refreshed after each job (read by /readyz)
        self._queue: deque[Any] = deque()
        # (decision id, served version, instance, versions to shadow it): worker thread only
        self._shadows: deque[tuple[str, str, dict[str, Any], tuple[str, ...]]] = deque()
        self._idle_since = 0.0  # when the last job ended (monotonic)
        self.shadow_dropped = 0  # requests whose shadow work was dropped (queue full, error,
        #                          or computed after the label had closed the decision)
        self.shadow_scored = 0  # requests whose shadow predictions joined their decision
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self.syncing = False  # a catch-up job is queued or running

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def shadow_depth(self) -> int:
        return len(self._shadows)

    def start(self) -> None:
        self.live_versions = tuple(self.deployment.live_versions)
        self._thread = threading.Thread(target=self._run, name=f"worker-{self.deployment.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Finish the queued jobs, then end the thread (waits at most ``timeout``)."""
        if self._thread is None:
            return
        with self._ready:
            self._queue.append(_STOP)
            self._ready.notify()
        self._thread.join(timeout)

    # ----------------------------------------------------------- the loop side
    def call(self, function: Callable[[ServiceDeployment], Any]) -> asyncio.Future:
        """Run ``function(deployment)`` on the worker; await the returned future."""
        return self._submit(_Job(*self._future(), call=function))

    def predict(self, instances: list[dict[str, Any]], owner: str | None) -> asyncio.Future:
        """Route validated instances; the future holds one answer or error per instance."""
        return self._submit(_Job(*self._future(), instances=instances,
                                 owners=[owner] * len(instances)))

    @staticmethod
    def _future() -> tuple[asyncio.Future, asyncio.AbstractEventLoop]:
        loop = asyncio.get_running_loop()
        return loop.create_future(), loop

    def _submit(self, job: _Job) -> asyncio.Future:
        with self._ready:
            if self._thread is None:
                raise OverloadedError(f"deployment {self.deployment.name} is starting")
            if len(self._queue) >= self.max_queue:
                raise OverloadedError(
                    f"deployment {self.deployment.name} has {len(self._queue)} requests "
                    "waiting; retry later")
            self._queue.append(job)
            self._ready.notify()
        return job.future

    # --------------------------------------------------------- the worker side
    def _take(self) -> Any:
        """The next job, and the predict jobs right behind a predict job (micro-batch);
        ``_SHADOW`` when no job came during a pause and shadow work waits."""
        with self._ready:
            while not self._queue:
                if not self._shadows:
                    self._ready.wait()
                    continue
                wait = self._idle_since + SHADOW_PAUSE_SECONDS - time.monotonic()
                if wait <= 0:
                    return _SHADOW
                self._ready.wait(wait)
            job = self._queue.popleft()
            if job is _STOP:
                return None
            jobs = [job]
            if job.call is None:
                size = len(job.instances)
                queue = self._queue
                while (queue and queue[0] is not _STOP and queue[0].call is None
                       and size + len(queue[0].instances) <= self.micro_batch):
                    size += len(queue[0].instances)
                    jobs.append(queue.popleft())
            return jobs

    def _run(self) -> None:
        _trust_validated_inputs()
        while (jobs := self._take()) is not None:
            if jobs is _SHADOW:
                self._run_shadows()
                self._refresh()
                self._idle_since = time.monotonic()
                continue
            if jobs[0].call is not None:
                settled = [self._run_call(jobs[0])]
            else:
                settled = self._run_predict(jobs)
            self._refresh()
            loop = jobs[0].loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    loop.call_soon_threadsafe(_settle, settled)
            if jobs[0].call is None:
                self._queue_shadows(jobs, settled)
            self._idle_since = time.monotonic()
        if self._shadows:  # stopping: shadow work still waiting is dropped, and counted
            self._count_shadows(len(self._shadows), 0)
            self._shadows.clear()

    def _refresh(self) -> None:
        try:
            self.live_versions = tuple(self.deployment.live_versions)
        except Exception:  # a status read cannot fail today; never kill the worker
            log.exception("deployment %s: reading live versions", self.deployment.name)

    def _queue_shadows(self, jobs: list[_Job],
                       settled: list[tuple[Any, Any, BaseException | None]]) -> None:
        """Answered requests join the shadow queue; what does not fit is dropped."""
        try:
            if not self.deployment.shadows:
                return
        except Exception:  # never kill the worker
            log.exception("deployment %s: shadow state", self.deployment.name)
            return
        queue, dropped = self._shadows, 0
        for job, (_, answers, error) in zip(jobs, settled, strict=True):
            if error is not None:
                continue
            for instance, answer in zip(job.instances, answers, strict=True):
                if not isinstance(answer, dict):
                    continue  # an error in place of this instance's answer
                try:
                    targets = self.deployment.shadow_targets(answer["version"])
                except Exception:  # never kill the worker
                    log.exception("deployment %s: shadow targets", self.deployment.name)
                    return
                if not targets:
                    continue  # not sampled (mode rate), or nobody left to evaluate
                if len(queue) >= self.shadow_queue:
                    dropped += 1
                else:
                    queue.append((answer["decision_id"], answer["version"], instance, targets))
        if dropped:
            self._count_shadows(dropped, 0)

    def _run_shadows(self) -> None:
        """One micro-batch of shadow work; a failure drops it (the answers were sent)."""
        queue = self._shadows
        items = [queue.popleft() for _ in range(min(self.micro_batch, len(queue)))]
        try:
            scored, late = self.deployment.shadow(items)
        except Exception as error:
            log.warning("deployment %s: shadow predictions for %d requests dropped: %s",
                        self.deployment.name, len(items), error)
            self._count_shadows(len(items), 0)
            return
        self._count_shadows(late, scored)  # late: the label came first, nothing to score

    def _count_shadows(self, dropped: int, scored: int) -> None:
        self.shadow_dropped += dropped
        self.shadow_scored += scored
        if self.on_shadow is not None:
            try:
                self.on_shadow(dropped, scored)
            except Exception:  # metrics must never kill the worker
                log.exception("deployment %s: counting shadow work", self.deployment.name)

    def _run_call(self, job: _Job) -> tuple[Any, Any, BaseException | None]:
        try:
            return job.future, job.call(self.deployment), None
        except Exception as error:
            return job.future, None, error

    def _run_predict(self, jobs: list[_Job]) -> list[tuple[Any, Any, BaseException | None]]:
        instances = [x for job in jobs for x in job.instances]
        owners = [o for job in jobs for o in job.owners]
        try:
            answers = self.deployment.predict(instances, owners)
        except Exception as error:
            return [(job.future, None, error) for job in jobs]
        settled, start = [], 0
        for job in jobs:
            end = start + len(job.instances)
            settled.append((job.future, answers[start:end], None))
            start = end
        return settled


def _trust_validated_inputs() -> None:
    """scikit-learn re-checks every input for NaN and infinity (~30 us of a ~130 us
    logistic-regression call, measured); instances reach a worker only after
    ``ServiceDeployment.validate`` refused non-finite numbers, so this thread skips that
    check (scikit-learn's config is per thread)."""
    try:
        import sklearn
    except ImportError:  # pragma: no cover - a dependency
        return
    sklearn.set_config(assume_finite=True)


def _settle(settled: list[tuple[Any, Any, BaseException | None]]) -> None:
    for future, result, error in settled:
        if future.done():  # the request was cancelled (client gone)
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class Workers:
    """The start-up of the deployments (database, models, snapshots), then their workers."""

    def __init__(self, store: Store, deployments: dict[str, ServiceDeployment], *,
                 max_queue: int, micro_batch: int, shadow_queue: int = 10_000,
                 on_shadow: Callable[[str, int, int], None] | None = None) -> None:
        """``on_shadow(deployment, dropped, scored)``: see :class:`Worker`."""
        self.store = store
        self.deployments = deployments
        self.workers = {
            name: Worker(d, max_queue=max_queue, micro_batch=micro_batch,
                         shadow_queue=shadow_queue,
                         on_shadow=None if on_shadow is None else
                         (lambda dropped, scored, n=name: on_shadow(n, dropped, scored)))
            for name, d in deployments.items()}
        self.started = False
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> Worker:
        return self.workers[name]

    def startup(self) -> None:
        """Blocking start-up I/O: migrate, lock the database, load every deployment.

        Idempotent: ``banditops serve`` runs it before binding the port (so a failure is one
        clear error line), and the application's lifespan runs it otherwise."""
        with self._lock:
            if self.started:
                return
            self.store.lock()  # before migrating: a second process must not touch the file
            self.store.migrate()
            for deployment in self.deployments.values():
                deployment.start()
            self.started = True

    def start_threads(self) -> None:
        for worker in self.workers.values():
            if worker._thread is None:
                worker.start()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Snapshot every deployment (a clean stop restarts without replay), end the workers."""
        for name, worker in self.workers.items():
            if worker._thread is None:
                continue
            with worker._ready:  # past max_queue on purpose: the last job
                worker._queue.append(_Job(None, None, call=_snapshot(name)))
                worker._ready.notify()
        for worker in self.workers.values():
            worker.stop(timeout)


def _snapshot(name: str) -> Callable[[ServiceDeployment], None]:
    def snapshot(deployment: ServiceDeployment) -> None:
        try:
            deployment.snapshot()
        except Exception:
            log.exception("snapshot of %s at shutdown failed", name)
    return snapshot

