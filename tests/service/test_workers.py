"""The worker thread of a deployment: bounded queue, micro-batched predictions, in order;
shadow work only when idle, in a bounded queue that drops and counts what does not fit."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from banditops.deployment import ShadowWork
from banditops.errors import ModelError, OverloadedError
from banditops.service.workers import Worker


class Fake:
    """A ServiceDeployment stand-in whose first predict waits until released."""

    name = "fake"
    live_versions = ("v1",)
    shadows = False  # no shadow scoring

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict(self, instances, owners):
        self.calls.append(("predict", list(instances)))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(30)
        return [ModelError(f"bad {x}") if x == "bad" else {"x": x, "owner": o}
                for x, o in zip(instances, owners, strict=True)]

    def report(self):
        self.calls.append(("report", []))
        return "report"


async def _blocked(worker: Worker, fake: Fake) -> asyncio.Future:
    first = worker.predict(["a"], "k0")
    assert await asyncio.to_thread(fake.entered.wait, 30)
    return first


def test_queued_predictions_are_batched_in_order_and_sliced_per_request():
    async def scenario():
        fake = Fake()
        worker = Worker(fake, max_queue=100, micro_batch=4)
        worker.start()
        first = await _blocked(worker, fake)
        futures = [worker.predict(["b", "c"], "k1"), worker.predict(["d"], "k2"),
                   worker.predict(["e", "f"], "k3"),  # would make 5 > micro_batch: next call
                   worker.call(lambda d: d.report()), worker.predict(["g"], "k4")]
        fake.release.set()
        results = await asyncio.gather(first, *futures)
        worker.stop(10)
        return fake.calls, results

    calls, results = asyncio.run(scenario())
    assert calls == [("predict", ["a"]), ("predict", ["b", "c", "d"]), ("predict", ["e", "f"]),
                     ("report", []), ("predict", ["g"])]
    assert results[1] == [{"x": "b", "owner": "k1"}, {"x": "c", "owner": "k1"}]
    assert results[2] == [{"x": "d", "owner": "k2"}]
    assert results[4] == "report"


def test_a_full_queue_is_overloaded_at_once_and_errors_stay_per_instance():
    async def scenario():
        fake = Fake()
        worker = Worker(fake, max_queue=2, micro_batch=64)
        worker.start()
        first = await _blocked(worker, fake)
        queued = [worker.predict(["bad", "ok"], None), worker.predict(["x"], None)]
        with pytest.raises(OverloadedError, match="2 requests waiting"):
            worker.predict(["y"], None)
        fake.release.set()
        answers = await asyncio.gather(first, *queued)
        worker.stop(10)
        return answers

    answers = asyncio.run(scenario())
    assert isinstance(answers[1][0], ModelError) and answers[1][1]["x"] == "ok"
    assert answers[2] == [{"x": "x", "owner": None}]


def test_an_error_in_a_call_reaches_only_its_request():
    async def scenario():
        fake = Fake()
        fake.entered.set()
        fake.release.set()
        worker = Worker(fake, max_queue=10, micro_batch=8)
        worker.start()
        failing = worker.call(lambda d: 1 / 0)
        fine = worker.call(lambda d: d.report())
        results = await asyncio.gather(failing, fine, return_exceptions=True)
        worker.stop(10)
        return results

    failing, fine = asyncio.run(scenario())
    assert isinstance(failing, ZeroDivisionError) and fine == "report"


class Shadowing:
    """A ServiceDeployment stand-in with shadow work; each shadow call waits until released."""

    name = "shadowing"
    live_versions = ("v1", "v2")
    shadows = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.shadowing = threading.Event()
        self.release = threading.Event()

    def predict(self, instances, owners):
        self.calls.append(("predict", list(instances)))
        return [{"decision_id": f"d-{x}", "version": "v1", "prediction": 0}
                for x in instances]

    def shadow_targets(self, served):
        return ("v2",)

    def shadow(self, items):
        self.calls.append(("shadow", [item[0] for item in items]))
        self.shadowing.set()
        assert self.release.wait(30)
        self.release.clear()
        return ShadowWork(len(items), 0)


def test_shadow_work_runs_when_idle_drops_what_does_not_fit_and_never_holds_predict_long():
    async def scenario():
        fake = Shadowing()
        counted: list[tuple[int, int]] = []
        worker = Worker(fake, max_queue=10, micro_batch=2, shadow_queue=3,
                        on_shadow=lambda dropped, scored: counted.append((dropped, scored)))
        worker.start()
        first = await worker.predict(["a", "b", "c", "d", "e"], None)  # 3 queued, 2 dropped
        assert await asyncio.to_thread(fake.shadowing.wait, 30)  # idle: a batch of 2 runs
        assert worker.shadow_dropped == 2 and worker.shadow_depth == 1
        second = worker.predict(["f"], None)  # arrives while that batch runs
        fake.release.set()
        answer = await second  # answered after the running batch, before any other
        after_second = list(fake.calls)
        deadline = time.monotonic() + 30  # the remaining shadow work: "c" and "f"
        while worker.shadow_scored < 4:
            assert time.monotonic() < deadline, worker.shadow_scored
            fake.release.set()
            await asyncio.sleep(0.01)
        worker.stop(10)
        return first, answer, after_second, fake.calls, counted, worker

    first, answer, after_second, calls, counted, worker = asyncio.run(scenario())
    assert [a["decision_id"] for a in first] == ["d-a", "d-b", "d-c", "d-d", "d-e"]
    assert answer == [{"decision_id": "d-f", "version": "v1", "prediction": 0}]
    assert after_second == [("predict", ["a", "b", "c", "d", "e"]),
                            ("shadow", ["d-a", "d-b"]), ("predict", ["f"])]
    assert calls[3:] == [("shadow", ["d-c", "d-f"])]
    assert (worker.shadow_dropped, worker.shadow_scored) == (2, 4)
    assert sum(d for d, _ in counted) == 2 and sum(s for _, s in counted) == 4


def test_shadow_work_still_waiting_at_shutdown_is_counted_as_dropped():
    async def scenario():
        fake = Shadowing()
        worker = Worker(fake, max_queue=10, micro_batch=2, shadow_queue=10)
        worker.start()
        await worker.predict(["a", "b", "c", "d", "e"], None)
        assert await asyncio.to_thread(fake.shadowing.wait, 30)  # "a", "b" run; 3 wait
        stopping = asyncio.create_task(asyncio.to_thread(worker.stop, 30))
        deadline = time.monotonic() + 30
        while not worker._queue:  # stop() has queued its end before the batch finishes
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)
        fake.release.set()
        await stopping
        return worker

    worker = asyncio.run(scenario())
    assert (worker.shadow_scored, worker.shadow_dropped, worker.shadow_depth) == (2, 3, 0)
