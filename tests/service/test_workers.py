"""The worker thread of a deployment: bounded queue, micro-batched predictions, in order."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from banditops.errors import ModelError, OverloadedError
from banditops.service.workers import Worker


class Fake:
    """A ServiceDeployment stand-in whose first predict waits until released."""

    name = "fake"
    live_versions = ("v1",)

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
