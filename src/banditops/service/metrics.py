"""Prometheus metrics, and the ASGI wrapper that counts, times and size-limits requests.

A plain ASGI wrapper rather than a Starlette middleware class: it adds microseconds, not
a task per request. Each process exposes its own counters (scrape every replica).
"""

from __future__ import annotations

import json
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("banditops_http_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("banditops_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("banditops_decisions", "Decisions served per version",
                                 ["deployment", "version"], registry=r)
        self.feedback = Counter("banditops_feedback", "Feedback recorded per version",
                                ["deployment", "version"], registry=r)
        self.reward = Counter("banditops_reward", "Sum of rewards per version",
                              ["deployment", "version"], registry=r)
        self.rollbacks = Counter("banditops_rollbacks", "Versions taken down automatically",
                                 ["deployment", "kind"], registry=r)
        self._children: dict[tuple, Any] = {}  # labels() costs ~10 us; children are cached

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def decision(self, deployment: str, version: str) -> None:
        self._child(self.decisions, deployment, version).inc()

    def feedback_received(self, deployment: str, version: str, reward: float) -> None:
        self._child(self.feedback, deployment, version).inc()
        self._child(self.reward, deployment, version).inc(reward)

    def taken_down(self, deployment: str, kind: str) -> None:
        self._child(self.rollbacks, deployment, kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def wrap(self, app: Any, *, max_body_bytes: int, fast_lane=None, fast_route: str = ""
             ) -> Any:
        """The ASGI app with request metrics, a request body limit (413), and an optional
        fast lane: ``fast_lane(scope, body) -> (status, payload) | None`` answers the
        requests it recognises before the framework sees them."""
        metrics = self

        async def guarded(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            started = time.perf_counter()
            status = {"code": 500}

            async def record_status(message):
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                await send(message)

            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
                await _reject(record_status, max_body_bytes)
            else:
                body = await _read_body(receive, max_body_bytes)
                answer = None if body is None or fast_lane is None else fast_lane(scope, body)
                if body is None:
                    await _reject(record_status, max_body_bytes)
                elif answer is not None:
                    scope["route_path"] = fast_route
                    await _respond(record_status, *answer)
                else:
                    await app(scope, _replay(body, receive), record_status)
            path = scope.get("route_path") or getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            metrics._child(metrics.requests, method, path, str(status["code"])).inc()
            metrics._child(metrics.latency, method, path).observe(
                time.perf_counter() - started)

        guarded.state = app.state  # tests and tools reach the FastAPI state through the wrapper
        guarded.fastapi = app
        return guarded


async def _read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = {"done": False}

    async def replayed():
        if not sent["done"]:
            sent["done"] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _reject(send, limit: int) -> None:
    await _respond(send, 413, {"detail": f"request body over the {limit:,}-byte limit"})


async def _respond(send, status: int, payload: Any) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
