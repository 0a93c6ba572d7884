"""What each route does, one layer below the wiring in ``app.py``.

Bodies are parsed here, with limits (depth, number of values, number sizes, no NaN/Infinity,
no NUL), not by the framework: every bad input is a 4xx naming what was wrong. A body over
``OFF_LOOP_BYTES`` is parsed and validated in a worker thread, so that one client's
megabyte of JSON does not hold up every other request; small bodies stay on the event loop,
where parsing them costs less than the hop to a thread. Error bodies are
``{"detail": "<message>"}``; one table maps error types to statuses. Every call of a
``ServiceDeployment`` goes through its worker thread (see ``workers.py``); the event loop
only parses, validates the features against the schema, and waits.

Feedback for one decision answers 200 when it is recorded, 404 for an unknown decision id,
410 when the decision is older than the deployment's ``feedback_ttl_seconds``, 409 when it
already had feedback (it is counted once), and 422 when the label is not one the deployment
knows. A list of feedbacks answers 200 with one result per item, each with its own status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from banditops.errors import (
    ArtifactError,
    BanditOpsError,
    DuplicateArmError,
    DuplicateFeedbackError,
    ExpiredDecisionError,
    InvalidLabelError,
    InvalidParameterError,
    ModelError,
    ModelTimeoutError,
    OverloadedError,
    StateConflictError,
    StoreError,
    UnknownArmError,
    UnknownDecisionError,
)
from banditops.service.config import ServiceConfig, describe_errors
from banditops.service.exports import DEFAULT_EXPORT_ROWS, MAX_EXPORT_ROWS, MAX_TIME, Exports
from banditops.service.history import MAX_BUCKETS, MAX_MINUTES, History
from banditops.service.metrics import Metrics
from banditops.service.runtime import ServiceDeployment, json_safe
from banditops.service.sources import Fetched, Sources, is_uri
from banditops.service.workers import Worker, Workers
from banditops.store.sql import Store

log = logging.getLogger("banditops.service")

MAX_DEPTH = 64  # JSON nesting; a request needs 3 or 4
MAX_JSON_VALUES = 100_000  # values (keys included) in one body; a full batch needs a few 10,000
MAX_UPLOADS = 2  # uploads received at once: disk, threads and memory stay bounded
OFF_LOOP_BYTES = 64 * 1024  # bodies larger than this are parsed in a worker thread
MAX_NUMBER_CHARS = 100  # a float literal longer than this is not a measurement
MAX_INT = 2**63 - 1
MAX_LABEL_CHARS = 200
VERSION_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
RETRY_AFTER_SECONDS = 1

# One table from error type to HTTP status (the most specific type in the MRO wins).
ERROR_STATUS: dict[type[BaseException], int] = {
    UnknownArmError: 404, UnknownDecisionError: 404,
    InvalidParameterError: 422, InvalidLabelError: 422, ArtifactError: 422,
    StateConflictError: 409, DuplicateArmError: 409, DuplicateFeedbackError: 409,
    ExpiredDecisionError: 410,
    ModelError: 503, ModelTimeoutError: 503, StoreError: 503, OverloadedError: 503,
    BanditOpsError: 422,
}
RETRY_LATER = (StoreError, OverloadedError)
FEEDBACK_STATUS = {"recorded": 200, "duplicate": 409, "unknown": 404, "expired": 410,
                   "invalid": 422}


class HttpError(BanditOpsError):
    """A request mistake with its status decided here (400 malformed JSON, 413 too many...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Caller:
    scope: str  # "client" | "admin"
    key_id: str  # a short digest of the key: who made a decision, never the key


def error_answer(error: BaseException) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
    """Status, body and extra headers for an error (unexpected ones are a logged 500)."""
    if isinstance(error, HttpError):
        return error.status, {"detail": str(error)}, []
    for kind in type(error).__mro__:
        if kind in ERROR_STATUS:
            status = ERROR_STATUS[kind]
            headers = ([(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
                       if isinstance(error, RETRY_LATER) else [])
            message = str(error)
            if isinstance(error, ModelError):
                message = f"no live version could serve: {message}"
            return status, {"detail": message}, headers
    log.error("unexpected error", exc_info=error)
    return 500, {"detail": f"internal error ({type(error).__name__}); see the server log"}, []


def encode(payload: Any) -> bytes:
    """JSON bytes; numpy scalars, non-finite floats and odd objects made JSON-safe."""
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError):
        return json.dumps(json_safe(payload), separators=(",", ":")).encode()


def respond(payload: Any, status: int = 200) -> Response:
    return Response(encode(payload), status_code=status, media_type="application/json")


# ------------------------------------------------------------------ parsing
def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no huge numbers, no NUL, at most MAX_DEPTH deep."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise HttpError(400, f"malformed JSON: the body is not UTF-8 ({error.reason} at byte "
                             f"{error.start})") from None
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_int=_int, parse_float=_float)
    except HttpError:
        raise
    except RecursionError:
        raise HttpError(400, f"malformed JSON: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:
        raise HttpError(400, f"malformed JSON: {error}") from None
    _check_tree(data)
    return data


T = TypeVar("T")


async def off_loop(raw: bytes, work: Callable[[], T]) -> T:
    """``work()``, in a worker thread when ``raw`` is over ``OFF_LOOP_BYTES`` (parsing a
    megabyte takes tens of milliseconds), else right here (a thread hop costs ~50 us)."""
    if len(raw) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(work)
    return work()


def _no_constant(token: str) -> Any:
    raise HttpError(400, f"malformed JSON: {token} is not a JSON number; send finite numbers")


def _int(literal: str) -> int:
    if len(literal.lstrip("-")) > 19 or abs(int(literal)) > MAX_INT:
        raise HttpError(400, f"malformed JSON: integer with {len(literal)} characters; at most "
                             "64-bit integers are accepted")
    return int(literal)


def _float(literal: str) -> float:
    value = float(literal) if len(literal) <= MAX_NUMBER_CHARS else math.inf
    if not math.isfinite(value):
        raise HttpError(400, f"malformed JSON: number {literal[:30]!r}... is too large or too "
                             "long")
    return value


def _check_tree(data: Any) -> None:
    stack = [(data, 1)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_JSON_VALUES:
            raise HttpError(413, f"JSON body with more than {MAX_JSON_VALUES:,} values; send "
                                 "fewer or smaller items per request")
        if isinstance(value, str):
            if "\x00" in value:
                raise HttpError(400, "malformed JSON: strings must not contain NUL characters")
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise HttpError(400, f"malformed JSON: nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                stack.extend((k, depth) for k in value)
                stack.extend((v, depth + 1) for v in value.values())
            else:
                stack.extend((v, depth + 1) for v in value)


def parse(model: type[BaseModel], raw: bytes, *, where: str = "") -> Any:
    """The body as ``model``, or a 400 (not JSON) / 422 (naming each bad field)."""
    return validate(model, parse_json(raw), where=where)


def validate(model: type[BaseModel], data: Any, *, where: str = "") -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = describe_errors(error.errors())
        raise HttpError(422, f"{where}{problems}" if where else problems) from None


# ----------------------------------------------------------------- bodies
class PredictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: dict[str, Any] | None = Field(
        default=None, description="One instance: each of the deployment's features and its "
                                  "value (a number or a string, as declared).")
    instances: list[Any] | None = Field(
        default=None, description="A batch instead: a list of such objects.")


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision_id: str = Field(min_length=1, max_length=64,
                             description="The decision_id the predict answer gave.")
    label: Any = Field(..., description="The true class: a string, number or boolean.")

    @field_validator("label")
    @classmethod
    def _scalar(cls, label: Any) -> Any:
        if label is None or isinstance(label, dict | list):
            raise ValueError("expected a class label (a string, number or boolean)")
        if isinstance(label, str) and len(label) > MAX_LABEL_CHARS:
            raise ValueError(f"at most {MAX_LABEL_CHARS} characters")
        return label


class VersionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$",
                      description="The new version's name.")
    artifact: str = Field(min_length=1, max_length=4096,
                          description="The model file on the server (.skops, .onnx; .joblib "
                                      "where allowed), inside the configured artifact "
                                      "folders; a relative path is looked up in each of "
                                      "them, then from the config file's folder.")
    validation_score: float | None = Field(default=None, ge=0.0, le=1.0,
                                           description="Its offline validation score, if any.")


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=500,
                        description="Why, recorded in the version's event.")


def body_schema(model: type[BaseModel] | None, *, list_of: bool = False, required: bool = True
                ) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a route that reads its body itself."""
    if model is None:
        return {}
    schema = model.model_json_schema()
    if list_of:
        schema = {"anyOf": [schema, {"type": "array", "items": schema, "minItems": 1}]}
    return {"requestBody": {"required": required,
                            "content": {"application/json": {"schema": schema}}}}


# -------------------------------------------------------------- endpoints
Since = Annotated[int, Query(ge=0, le=MAX_INT, description="First event sequence number")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Most events to return")]
Minutes = Annotated[int, Query(ge=1, le=MAX_MINUTES, description="How far back to look")]
BucketCount = Annotated[int, Query(ge=1, le=MAX_BUCKETS, description="Equal time buckets")]
MaxAge = Annotated[float, Query(ge=0, le=10, description=(
    "Accept a report computed at most this many seconds ago (0: a fresh one)"))]
ExportFormat = Annotated[Literal["parquet", "csv"], Query(description=(
    "`parquet` (typed columns, compressed) or `csv`"))]
ExportSince = Annotated[float | None, Query(ge=0, le=MAX_TIME, description=(
    "Decisions made at or after this Unix time (seconds)"))]
ExportUntil = Annotated[float | None, Query(ge=0, le=MAX_TIME, description=(
    "Decisions made before this Unix time (seconds)"))]
ExportLimit = Annotated[int, Query(ge=1, le=MAX_EXPORT_ROWS, description=(
    f"Most decisions in the file, oldest first (at most {MAX_EXPORT_ROWS:,})"))]


class Endpoints:
    """The routes' logic; each method answers one route (see ``create_app`` for the table)."""

    def __init__(self, config: ServiceConfig, store: Store,
                 deployments: dict[str, ServiceDeployment], workers: Workers,
                 metrics: Metrics, sources: Sources | None = None) -> None:
        self.config = config
        self.sources = sources or Sources(config, store)
        self.store = store
        self.deployments = deployments
        self.workers = workers
        self._reporting: set[str] = set()  # deployments whose metrics report is under way
        self.metrics = metrics
        self._pinger = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-ping")
        self._ping: asyncio.Future | None = None
        self.history_cache = History(store)
        self.exports = Exports(store)
        # name -> (monotonic time, report future): shared by readers that accept an age
        self._reports: dict[str, tuple[float, asyncio.Future]] = {}
        self.uploads = 0  # uploads being received or registered

    def _find(self, name: str) -> tuple[ServiceDeployment, Worker]:
        try:
            return self.deployments[name], self.workers[name]
        except KeyError:
            raise HttpError(404, f"unknown deployment {name[:100]!r}; deployments: "
                                 f"{sorted(self.deployments)}") from None

    @staticmethod
    def _version(version: str) -> str:
        if not VERSION_NAME.fullmatch(version):
            raise UnknownArmError(f"unknown version {version[:100]!r}")
        return version

    @staticmethod
    def _caller(request: Request) -> Caller:
        return request.scope["banditops.caller"]

    # --------------------------------------------------------- requests
    async def predict(self, name: str, request: Request) -> Response:
        """Route one instance (``features``) or a batch (``instances``)."""
        return respond(await self.predict_payload(name, await request.body(),
                                                  self._caller(request)))

    async def predict_payload(self, name: str, raw: bytes, caller: Caller) -> Any:
        """The predict route's answer; the ASGI guard calls it directly (see asgi.py)."""
        target, worker = self._find(name)
        body, batch = await off_loop(raw, lambda: self._predict_batch(target, raw))
        answers = await worker.predict(batch, caller.key_id)
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        for answer in answers:
            self.metrics.decision(name, answer["version"])
        return answers[0] if body.features is not None else {"decisions": answers}

    def _predict_batch(self, target: ServiceDeployment, raw: bytes
                       ) -> tuple[PredictBody, list[dict[str, Any]]]:
        """The parsed body and its validated instances (no I/O: runs on or off the loop)."""
        body = parse(PredictBody, raw)
        if (body.features is None) == (body.instances is None):
            raise HttpError(422, "send either 'features' (one instance) or 'instances' (a list)")
        if body.instances is not None:
            if not body.instances:
                raise HttpError(422, "instances: the list is empty")
            if len(body.instances) > self.config.max_batch:
                raise HttpError(413, f"instances: {len(body.instances)} items; at most "
                                     f"{self.config.max_batch} per request")
            return body, [target.validate(x, f"instances[{i}]")
                          for i, x in enumerate(body.instances)]
        return body, [target.validate(body.features, "features")]

    async def feedback(self, name: str, request: Request) -> Response:
        """Ground truth for one decision, or a list of them."""
        _, worker = self._find(name)
        raw = await request.body()
        data, items = await off_loop(raw, lambda: self._feedback_items(raw))
        owner = self._caller(request).key_id
        pairs = [(item.decision_id, item.label) for item in items]
        outcomes = await worker.call(lambda d: d.feedback(pairs, owner=owner))
        for outcome in outcomes:
            if outcome.status == "recorded":
                self.metrics.feedback_received(name, outcome.version, outcome.reward or 0.0)
        results = [{"decision_id": o.decision_id, "status": o.status, "reward": o.reward,
                    **({"detail": o.message} if o.message else {})} for o in outcomes]
        if isinstance(data, list):
            return respond({"results": results})
        outcome = outcomes[0]
        if outcome.status != "recorded":
            raise HttpError(FEEDBACK_STATUS.get(outcome.status, 422), outcome.message)
        return respond(results[0])

    def _feedback_items(self, raw: bytes) -> tuple[Any, list[FeedbackItem]]:
        """The parsed body and its validated items (no I/O: runs on or off the loop)."""
        data = parse_json(raw)
        if not isinstance(data, list):
            return data, [validate(FeedbackItem, data)]
        if not data:
            raise HttpError(422, "feedback: the list is empty")
        if len(data) > self.config.max_batch:
            raise HttpError(413, f"feedback: {len(data)} items; at most "
                                 f"{self.config.max_batch} per request")
        return data, [validate(FeedbackItem, item, where=f"[{i}].")
                      for i, item in enumerate(data)]

    # ---------------------------------------------------------- reading
    async def list_deployments(self) -> Response:
        return respond({"deployments": [
            {"name": name, "policy": d.config.policy,
             "live_versions": list(self.workers[name].live_versions)}
            for name, d in self.deployments.items()]})

    async def show(self, name: str, max_age: MaxAge = 0) -> Response:
        """The deployment's report, computed on its worker. With ``max_age`` (what the
        dashboard sends), a report that recent is shared: many open dashboards cost the
        worker, which serves predictions, one report per ``max_age`` seconds. A status change
        made through this process drops the shared report."""
        _, worker = self._find(name)
        now = time.monotonic()
        shared = self._reports.get(name)
        if max_age > 0 and shared is not None and now - shared[0] <= max_age and not (
                shared[1].done() and (shared[1].cancelled() or shared[1].exception())):
            return respond(await asyncio.shield(shared[1]))
        future = worker.call(lambda d: d.report())
        self._reports[name] = (now, future)
        return respond(await future)

    async def events(self, name: str, since: Since = 0, limit: Limit = 100) -> Response:
        """Events from the database, read in a thread (not on the worker that serves
        predictions: they are the store's rows, not the deployment's state)."""
        self._find(name)
        return respond({"events": await asyncio.to_thread(self.store.events, name, since,
                                                          limit)})

    async def history(self, name: str, minutes: Minutes = 60, buckets: BucketCount = 60
                      ) -> Response:
        """Decisions, feedback, traffic share and reward per time bucket and version, from
        the database (a thread of its own; cached ~2 s, see ``history.py``)."""
        self._find(name)
        return respond(await self.history_cache.get(name, minutes, buckets))

    # ------------------------------------------------------------ admin
    async def export(self, name: str, format: ExportFormat = "parquet",
                     since: ExportSince = None, until: ExportUntil = None,
                     limit: ExportLimit = DEFAULT_EXPORT_ROWS) -> Response:
        """The decision log as a file (see ``exports.py``): read from the database in
        threads of its own, streamed."""
        self._find(name)
        return await self.exports.answer(name, format, since, until, limit)

    async def register(self, name: str, request: Request) -> Response:
        _, worker = self._find(name)
        raw = await request.body()
        body = await off_loop(raw, lambda: parse(VersionBody, raw))
        config = self.config
        if is_uri(body.artifact):  # an MLflow download or a database read: off the worker
            fetched = await asyncio.to_thread(self.sources.fetch, body.artifact)
            status, sha256 = await worker.call(lambda d: d.register_fetched(
                body.name, body.artifact, fetched, body.validation_score))
            return respond({"name": body.name, "status": status, "sha256": sha256,
                            "artifact": body.artifact}, 201)

        def register(d: ServiceDeployment) -> str:  # the path lookup touches the disk
            return d.register(body.name, artifact_path(config, body.artifact),
                              body.validation_score)

        status = await worker.call(register)
        self._reports.pop(name, None)
        return respond({"name": body.name, "status": status}, 201)

    async def upload(self, name: str, request: Request) -> Response:
        """Register a version from an uploaded artifact (multipart/form-data: ``version``,
        optional ``validation_score``, the file ``artifact``); answers its sha256. At most
        ``MAX_UPLOADS`` at once (503 with Retry-After past that, before any byte is read)."""
        _, worker = self._find(name)
        if self.uploads >= MAX_UPLOADS:  # each holds up to max_upload_bytes on disk
            raise OverloadedError(f"{self.uploads} uploads are under way; at most "
                                  f"{MAX_UPLOADS} at once: retry when one has finished")
        self.uploads += 1
        try:
            return await self._upload(name, worker, request)
        finally:
            self.uploads -= 1

    async def _upload(self, name: str, worker: Worker, request: Request) -> Response:
        from banditops.service.uploads import receive_upload

        config, sources = self.config, self.sources
        incoming = await asyncio.to_thread(sources.temporary)
        started = time.perf_counter()
        try:
            upload = await receive_upload(
                request.receive, request.headers.get("content-type", "").encode("latin-1"),
                incoming, limit=config.max_upload_bytes,
                idle_seconds=config.body_timeout_seconds,
                total_seconds=config.upload_timeout_seconds, allow_pickle=config.allow_pickle,
                check_version=lambda version: worker.call(
                    lambda d: d.check_new_version(version)))
            path = await asyncio.to_thread(sources.cached, incoming, upload.sha256,
                                           upload.suffix)
        finally:
            await asyncio.to_thread(incoming.unlink, missing_ok=True)
        log.info("upload received", extra={"fields": {
            "deployment": name, "version": upload.version, "bytes": upload.size,
            "sha256": upload.sha256, "seconds": round(time.perf_counter() - started, 3)}})
        reference = f"upload:{upload.sha256}{upload.suffix}"
        fetched = Fetched(path, [sources.cache], {"source": "upload",
                                                  "filename": upload.filename,
                                                  "size": upload.size}, keep=True)
        try:
            status, sha256 = await worker.call(lambda d: d.register_fetched(
                upload.version, reference, fetched, upload.validation_score))
        except BaseException:  # refused: keep no copy the database does not hold
            if not await asyncio.to_thread(self._stored, upload.sha256):
                await asyncio.to_thread(path.unlink, missing_ok=True)
            raise
        return respond({"name": upload.version, "status": status, "sha256": sha256,
                        "size": upload.size, "artifact": reference}, 201)

    def _stored(self, sha256: str) -> bool:
        try:
            return self.store.has_artifact(sha256)
        except Exception:
            return True  # cannot tell: keep the cached copy

    async def _reason(self, request: Request, default: str) -> str:
        raw = await request.body()
        if not raw.strip():
            return default
        return (await off_loop(raw, lambda: parse(ReasonBody, raw))).reason or default

    async def _change(self, name: str, version: str, request: Request, default_reason: str,
                      change: str, status: str) -> Response:
        """An admin status change: ``ServiceDeployment.<change>(version, reason)``."""
        _, worker = self._find(name)
        version = self._version(version)
        reason = await self._reason(request, default_reason)
        try:
            await worker.call(lambda d: getattr(d, change)(version, reason))
        finally:
            self._reports.pop(name, None)
        return respond({"name": version, "status": status})

    async def rollback(self, name: str, version: str, request: Request) -> Response:
        return await self._change(name, version, request, "manual rollback", "rollback",
                                  "rolled_back")

    async def reinstate(self, name: str, version: str, request: Request) -> Response:
        """Put a rolled-back or quarantined version live again."""
        return await self._change(name, version, request, "reinstated through the API",
                                  "reinstate", "live")

    async def promote(self, name: str, version: str, request: Request) -> Response:
        """Put a dark version live before its shadow evidence decides."""
        return await self._change(name, version, request, "promoted through the API",
                                  "promote", "live")

    async def retire(self, name: str, version: str, request: Request) -> Response:
        """Take a version out for good (an optional JSON body gives the reason)."""
        return await self._change(name, version, request, "retired through the API", "retire",
                                  "retired")

    # ----------------------------------------------------------- health
    async def healthz(self) -> Response:
        """The process answers: touches no worker and no database."""
        return respond({"status": "ok"})

    async def readyz(self) -> Response:
        """The database answers (within ``db_timeout_seconds``) and every deployment serves."""
        if not self.workers.started:
            return respond({"status": "not ready", "problems": ["starting"]}, 503)
        problems = [] if await self._database_answers() else ["database unreachable"]
        problems += [f"{name}: no live version" for name in self.deployments
                     if not self.workers[name].live_versions]
        if problems:
            return respond({"status": "not ready", "problems": problems}, 503)
        return respond({"status": "ready"})

    async def _database_answers(self) -> bool:
        """One ping at a time in its own thread; a stalled one is shared, not repeated."""
        if self._ping is None or self._ping.done():
            self._ping = asyncio.get_running_loop().run_in_executor(self._pinger, self._ping_db)
        try:
            return await asyncio.wait_for(asyncio.shield(self._ping),
                                          self.config.db_timeout_seconds)
        except TimeoutError:
            return False

    def _ping_db(self) -> bool:
        try:
            return bool(self.store.ping())
        except Exception:
            return False

    async def prometheus(self) -> Response:
        """Counters as they stand, and per-version gauges from each deployment's report,
        computed on its worker. A scrape waits at most a quarter second for them: a worker
        busy with a slow model keeps its last values, refreshed when the report arrives."""
        waiting = []
        for name in self.deployments:
            if name in self._reporting:
                continue
            try:
                future = self.workers[name].call(lambda d: d.report())
            except Exception as error:  # a full queue: this scrape keeps the last values
                log.warning("metrics: deployment %s not reported: %s", name, error)
                continue
            self._reporting.add(name)
            future.add_done_callback(lambda f, n=name: self._reported(n, f))
            waiting.append(future)
        if waiting:
            await asyncio.wait(waiting, timeout=0.25)
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    def _reported(self, name: str, future: asyncio.Future) -> None:
        self._reporting.discard(name)
        if future.cancelled() or future.exception() is not None:
            return
        self.metrics.versions(name, future.result()["versions"])


def artifact_path(config: ServiceConfig, artifact: str) -> str:
    """Where a registration's artifact is. An absolute path is taken as given; a relative one
    is looked up inside each of ``artifact_dirs`` in turn, then from the config file's folder
    (so a path written as in the config file works too); the first file found wins. Either
    way it must lie inside an artifact folder (:func:`artifacts.check_path`, when loaded);
    candidates outside them are never looked at, so the answer tells nothing about the disk
    beyond them."""
    if "\x00" in artifact:
        raise ArtifactError("artifact: the path must not contain NUL characters")
    path = Path(artifact)
    if path.is_absolute():
        return str(path)
    tried = list(dict.fromkeys(
        (folder / path).absolute() for folder in [*config.artifact_dirs, config.folder]))
    inside = [c for c in tried if any(_within(c, folder) for folder in config.artifact_dirs)]
    if not inside:
        raise ArtifactError(
            f"artifact {artifact} is outside the configured artifact_dirs "
            f"({', '.join(str(f) for f in config.artifact_dirs) or 'none configured'}); "
            f"tried {', '.join(str(c) for c in tried)}")
    for candidate in inside:
        try:
            if candidate.is_file():
                return str(candidate)
        except OSError:  # a name too long for the file system
            continue
    raise ArtifactError(
        f"artifact {artifact} not found; tried {', '.join(str(c) for c in inside)} (a relative "
        "path is looked up in each of artifact_dirs, then from the config file's folder)")


def _within(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):  # too long, or a symlink loop
        return False
