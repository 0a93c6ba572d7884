"""Prometheus metrics of one service process (scrape every replica).

Label values are bounded: methods are GET, POST, DELETE or "other"; routes are route
templates or "unmatched"; deployments and versions come from the configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

METHODS = frozenset({"GET", "POST", "DELETE"})
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
        self.queued = Gauge("banditops_queued_jobs", "Jobs waiting for a deployment's worker",
                            ["deployment"], registry=r)
        self.shadow_dropped = Counter(
            "banditops_shadow_dropped", "Answered requests whose shadow predictions were "
            "dropped (shadow queue full, the shadow work failed, or the label arrived first)",
            ["deployment"], registry=r)
        self.shadow_scored = Counter(
            "banditops_shadow_scored", "Answered requests whose shadow predictions were "
            "computed and attached to their decision (scored when the label arrives)",
            ["deployment"], registry=r)
        self.shadow_queued = Gauge("banditops_shadow_queued",
                                   "Answered requests waiting for their shadow predictions",
                                   ["deployment"], registry=r)
        self.model_calls = Histogram(
            "banditops_model_call_seconds", "Wall time of each model call per version (a "
            "micro-batch is one call)", ["deployment", "version"], buckets=LATENCY_BUCKETS,
            registry=r)
        self.traffic_share = Gauge("banditops_traffic_share", "Share of traffic the policy "
                                   "gives each version now", ["deployment", "version"],
                                   registry=r)
        self.reward_mean = Gauge("banditops_reward_mean", "Mean production reward per version "
                                 "(all replicas; NaN before any feedback)",
                                 ["deployment", "version"], registry=r)
        self.live = Gauge("banditops_version_live", "1 while a version serves traffic, else 0",
                          ["deployment", "version"], registry=r)
        self._children: dict[tuple, Any] = {}  # labels() costs ~10 us; children are cached

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """One answered request; ``route`` is its template (None: no route matched)."""
        method = method if method in METHODS else "other"
        route = route or "unmatched"
        self._child(self.requests, method, route, str(status)).inc()
        self._child(self.latency, method, route).observe(seconds)

    def queue_depth(self, deployment: str, depth: Callable[[], float]) -> None:
        self.queued.labels(deployment).set_function(depth)

    def shadow_queue_depth(self, deployment: str, depth: Callable[[], float]) -> None:
        self.shadow_queued.labels(deployment).set_function(depth)
        self._child(self.shadow_dropped, deployment)  # shown as 0 before anything happens
        self._child(self.shadow_scored, deployment)

    def shadow_work(self, deployment: str, dropped: int, scored: int) -> None:
        """Called from a deployment's worker thread (prometheus counters are thread-safe)."""
        if dropped:
            self._child(self.shadow_dropped, deployment).inc(dropped)
        if scored:
            self._child(self.shadow_scored, deployment).inc(scored)

    def decision(self, deployment: str, version: str) -> None:
        self._child(self.decisions, deployment, version).inc()

    def feedback_received(self, deployment: str, version: str, reward: float) -> None:
        self._child(self.feedback, deployment, version).inc()
        self._child(self.reward, deployment, version).inc(reward)

    def model_call(self, deployment: str, version: str, seconds: float) -> None:
        """Called from a deployment's worker thread, once per model call."""
        self._child(self.model_calls, deployment, version).observe(seconds)

    def versions(self, deployment: str, views: list[Any]) -> None:
        """Per-version gauges from a deployment's report (its ``versions``: one mapping per
        version, as GET /v1/deployments/{name} shows them)."""
        for view in views:
            name = view["name"]
            self._child(self.traffic_share, deployment, name).set(view["traffic_share"])
            mean = view["reward_mean"]
            self._child(self.reward_mean, deployment, name).set(
                float("nan") if mean is None else mean)
            self._child(self.live, deployment, name).set(float(view["status"] == "live"))

    def taken_down(self, deployment: str, kind: str) -> None:
        self._child(self.rollbacks, deployment, kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
