"""Replay one strategy over a prepared stream, through the same ``Deployment`` as production.

``request`` granularity (the default) routes every row: the policy picks a version, the
version's precomputed prediction is served, and the label comes back ``delay`` rows later
as feedback, so the policy and the guardrail learn exactly as they would in the service.

``chunk`` granularity is the study's protocol: one deployment decision per chunk, the whole
chunk is served by the chosen version, and the chunk's mean reward is the feedback, given
before the next chunk's decision.

Releases arrive at the pipeline's rows; when one arrives the version ``max_live`` releases
older is retired. The replay records which version served each row, when versions were
rolled back or quarantined, and how many model calls were made (served and shadow
predictions: with shadow scoring, the Deployment asks other live versions too);
:mod:`banditops.simulation.metrics` turns that into numbers.

A shadow strategy goes through the same path: its Deployment shadow-scores, and a shadow
prediction is a lookup in the version's precomputed predictions, as a served one is. In
chunk mode a version's "prediction" for a chunk is scored as its mean reward on the chunk,
whether it served the chunk or shadowed it.

A contextual strategy (its policy a :class:`~banditops.policies.base.ContextualPolicy`) gets
each request's features as its context: the stream's feature table is encoded once per
encoder configuration (``ContextEncoder.encode_frame``, cached per process) and row ``i``'s
vector is passed with its prediction, so the decision, its feedback and its shadow rewards
all learn on it, as in the service. Contextual strategies run at request granularity only:
one decision per chunk routes no request on its own features.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from banditops.context import ContextEncoder
from banditops.deployment import Deployment, Event
from banditops.simulation.strategies import GRANULARITIES, RunSetup, Strategy
from banditops.simulation.stream import Stream

TAKEN_DOWN = ("rolled_back", "quarantined")


@dataclass(frozen=True)
class Replay:
    """What one run did: the version index that served each row (-1: nothing deployed yet)."""

    served: np.ndarray  # (n,) int16
    rollbacks: list[tuple[int, int]]  # (version index, row at which it was taken down)
    model_calls: int | None = None  # rows predicted, served or shadow (None: one per row)


class _RowModel:
    """A version's precomputed predictions, served by row number (River's predict_one);
    counts its calls, served or shadow."""

    __slots__ = ("_lookup", "calls")

    def __init__(self, predictions: np.ndarray) -> None:
        self._lookup = predictions.tolist()
        self.calls = 0

    def predict_one(self, row: int) -> int:
        self.calls += 1
        return self._lookup[row]


class _ChunkModel:
    """In chunk mode a version "predicts" a whole chunk: it hands back (version, chunk) and
    counts the chunk's rows as calls."""

    def __init__(self, index: int, sizes: list[int]) -> None:
        self.index = index
        self._sizes = sizes
        self.calls = 0

    def predict_one(self, chunk: int) -> tuple[int, int]:
        self.calls += self._sizes[chunk]
        return self.index, chunk


def replay(stream: Stream, strategy: Strategy, seed: int,
           granularity: str = "request") -> Replay:
    """Run ``strategy`` with ``seed`` over ``stream`` (see the module docstring)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if strategy.contextual and granularity == "chunk":
        raise ValueError(f"{strategy.name} routes each request on its features: it has no "
                         "chunk-granularity replay (one decision per chunk)")
    setup = strategy.build(seed, granularity=granularity,
                           margin=stream.settings.guardrail_margin)
    if granularity == "chunk":
        return _replay_chunks(stream, setup)
    return _replay_requests(stream, setup)


def _watch(deployment: Deployment, index: dict[str, int], clock: list[int],
           rollbacks: list[tuple[int, int]]) -> None:
    def record(event: Event) -> None:
        if event.kind in TAKEN_DOWN and event.version is not None:
            rollbacks.append((index[event.version], clock[0]))

    deployment.subscribe(record)


def _release(deployment: Deployment, stream: Stream, r: int, model: object) -> None:
    version = stream.versions[r]
    deployment.register(version.name, model, validation_score=version.validation_score)
    old = r - stream.settings.max_live
    if old < 0:
        return
    retired = stream.versions[old].name
    if deployment.live_versions == [retired]:
        # Launched dark, the newer releases serve nobody yet; the pipeline retires the only
        # live version, so the dark one with the best shadow reward so far takes over.
        deployment.promote(_best_dark(deployment),
                           "the pipeline retired the last live version")
    deployment.retire(retired, "the pipeline keeps max_live versions")


def _best_dark(deployment: Deployment) -> str:
    """The dark version with the best mean shadow reward (the newest if none has any)."""
    reports = {r.name: r for r in deployment.versions()}
    dark = deployment.dark_versions
    return max(reversed(dark), key=lambda name: (
        reports[name].shadow_reward_sum / reports[name].shadow_learned
        if reports[name].shadow_learned else -1.0))


# The last streams encoded in this process: (features table, encoder params) -> matrix. A
# worker replays one stream's strategies and seeds in a row, so two entries suffice.
_ENCODED: list[tuple[Any, dict[str, Any], np.ndarray]] = []
_ENCODED_KEEP = 2


def context_matrix(stream: Stream, encoder: ContextEncoder) -> np.ndarray:
    """Every row's encoded features, shape (n, dimension), computed once per stream and
    encoder configuration in a process."""
    if stream.features is None:
        raise ValueError(f"the {stream.dataset} / {stream.scenario} stream carries no "
                         "request features, which a contextual strategy routes on")
    params = encoder.params()
    for features, known, matrix in _ENCODED:
        if features is stream.features and known == params:
            return matrix
    matrix = encoder.encode_frame(stream.features)
    _ENCODED.insert(0, (stream.features, params, matrix))
    del _ENCODED[_ENCODED_KEEP:]
    return matrix


def _replay_requests(stream: Stream, setup: RunSetup) -> Replay:
    n, delay = stream.n, stream.settings.delay
    labels = stream.labels.tolist()
    clock = [0]
    deployment = setup.deployment(stream.settings.reward, max_pending=max(delay + 1, 1000),
                                  clock=lambda: float(clock[0]))
    index = {v.name: i for i, v in enumerate(stream.versions)}
    rollbacks: list[tuple[int, int]] = []
    _watch(deployment, index, clock, rollbacks)
    served = np.full(n, -1, dtype=np.int16)
    releases = {v.row: i for i, v in enumerate(stream.versions)}
    predict, feedback = deployment.predict, deployment.feedback
    contexts = (context_matrix(stream, setup.policy.encoder)  # type: ignore[attr-defined]
                if setup.policy.contextual else None)
    in_flight: deque[tuple[str, int]] = deque()
    pop, push = in_flight.popleft, in_flight.append
    choices = []
    models: list[_RowModel] = []
    for row in range(stream.start, n):
        if row in releases:
            clock[0] = row
            r = releases[row]
            models.append(_RowModel(stream.predictions[r]))
            _release(deployment, stream, r, models[-1])
        decision = predict(row) if contexts is None else predict(row, context=contexts[row])
        choices.append(decision.version)
        push((decision.id, row))
        if len(in_flight) > delay:
            decision_id, labelled = pop()
            clock[0] = row
            feedback(decision_id, labels[labelled])
    served[stream.start:] = [index[name] for name in choices]
    return Replay(served, rollbacks, sum(m.calls for m in models))


def _replay_chunks(stream: Stream, setup: RunSetup) -> Replay:
    bounds = stream.chunk_bounds()
    chunk_reward = [[float(np.mean(stream.rewards[v, s:e])) for s, e in bounds]
                    for v in range(len(stream.versions))]

    def reward(chunk: int, prediction: tuple[int, int]) -> float:
        version, _ = prediction
        return chunk_reward[version][chunk]

    clock = [0]
    deployment = setup.deployment(reward, clock=lambda: float(clock[0]))
    sizes = [end - start for start, end in bounds]
    models: list[_ChunkModel] = []
    index = {v.name: i for i, v in enumerate(stream.versions)}
    rollbacks: list[tuple[int, int]] = []
    _watch(deployment, index, clock, rollbacks)
    served = np.full(stream.n, -1, dtype=np.int16)
    releases = {v.row: i for i, v in enumerate(stream.versions)}
    previous = None
    for chunk, (start, end) in enumerate(bounds):
        clock[0] = start
        if previous is not None:
            deployment.feedback(previous, chunk - 1)
        if start in releases:
            r = releases[start]
            models.append(_ChunkModel(r, sizes))
            _release(deployment, stream, r, models[-1])
        decision = deployment.predict(chunk)
        served[start:end] = index[decision.version]
        previous = decision.id
    return Replay(served, rollbacks, sum(m.calls for m in models))
