"""The HTTP API (FastAPI). Every mistake of a client is a 4xx naming what was wrong.

Error bodies are ``{"detail": "<message>"}``. Feedback for one decision answers 200 when it is
recorded, 404 for an unknown decision id, 410 when the decision is older than the
deployment's ``feedback_ttl_seconds``, 409 when it already had feedback (it is counted once),
and 422 when the label gives no reward. A list of feedbacks answers 200 with one result per
item, each with its own status.

Routes run on the event loop, one request at a time per process, which is what keeps the
(not thread-safe) ``Deployment`` consistent; database calls are short local round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from banditops.errors import (
    DuplicateArmError,
    InvalidParameterError,
    ModelError,
    UnknownArmError,
)
from banditops.service.artifacts import ArtifactError
from banditops.service.config import ServiceConfig, describe_errors
from banditops.service.metrics import Metrics
from banditops.service.runtime import ServiceDeployment
from banditops.service.store import Store

log = logging.getLogger("banditops.service")
PREFIX = "/v1/deployments/"
FEEDBACK_STATUS = {"recorded": 200, "duplicate": 409, "unknown": 404, "expired": 410,
                   "invalid": 422}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PredictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: dict[str, Any] | None = None
    instances: list[Any] | None = None


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision_id: str = Field(min_length=1, max_length=64)
    label: Any = Field(...)


class VersionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    artifact: str = Field(min_length=1, max_length=4096)
    validation_score: float | None = Field(default=None, ge=0.0, le=1.0)


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="manual rollback", max_length=500)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _field_errors(error: RequestValidationError) -> tuple[int, str]:
    for item in error.errors():
        if item.get("type") == "json_invalid":
            return 400, f"malformed JSON: {item.get('ctx', {}).get('error', item['msg'])}"
    return 422, describe_errors(error.errors(), skip=1)  # loc[0] is "body"


def create_app(config: ServiceConfig, store: Store | None = None) -> FastAPI:
    """The application for a checked config; migrates the database and loads every version."""
    store = store or Store(config.database)
    store.migrate()
    metrics = Metrics()
    keys = config.keys()

    def count_event(deployment: str, event) -> None:
        if event.kind in ("rolled_back", "quarantined"):
            metrics.taken_down(deployment, event.kind)

    deployments = {name: ServiceDeployment(name, spec, config, store, on_event=count_event)
                   for name, spec in config.deployments.items()}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        """Catch up with other replicas between requests, not inside one (keeps p99 flat)."""
        async def catch_up() -> None:
            while True:
                await asyncio.sleep(max(config.sync_interval_seconds, 0.01))
                for deployment in deployments.values():
                    try:
                        deployment.sync()
                    except Exception:  # a database hiccup: try again next round
                        log.exception("catch-up of %s failed", deployment.name)

        # One process owns a SQLite file; only shared databases have other replicas.
        task = asyncio.create_task(catch_up()) if store.dialect != "sqlite" else None
        yield
        if task is not None:
            task.cancel()
        for deployment in deployments.values():  # a clean stop restarts without replay
            try:
                deployment.snapshot()
            except Exception:
                log.exception("snapshot of %s at shutdown failed", deployment.name)

    app = FastAPI(title="banditops", version="1", lifespan=lifespan,
                  description="Route requests between model versions with bandits; learn "
                              "from delayed feedback; roll back bad versions.")
    app.state.deployments = deployments
    app.state.store = store

    # ------------------------------------------------------------- errors
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return _error(error.status, error.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, error: RequestValidationError) -> JSONResponse:
        return _error(*_field_errors(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return _error(500, f"internal error ({type(error).__name__}); see the server log")

    # --------------------------------------------------------------- auth
    def scope_of(request: Request) -> str:  # async dependencies below: no thread hop
        return scope_of_headers(request.headers.get("authorization", ""),
                                request.headers.get("x-api-key", ""))

    def scope_of_headers(header: str, api_key: str) -> str:
        key = header[7:] if header.lower().startswith("bearer ") else api_key
        for known, scope in keys.items():
            if key and secrets.compare_digest(key, known):
                return scope
        raise ApiError(401, "missing or unknown API key: send 'Authorization: Bearer <key>'")

    async def client(request: Request) -> str:
        return scope_of(request)

    async def admin(request: Request) -> str:
        if scope_of(request) != "admin":
            raise ApiError(403, "this API key has the client scope; this needs admin")
        return "admin"

    def find(name: str) -> ServiceDeployment:
        try:
            return deployments[name]
        except KeyError:
            raise ApiError(404, f"unknown deployment {name!r}; deployments: "
                                f"{sorted(deployments)}") from None

    # ------------------------------------------------------------ routes
    def handle_predict(name: str, raw: bytes) -> dict[str, Any]:
        """The predict route's work, after authentication (shared with the fast lane)."""
        body = _parse(PredictBody, raw)
        target = find(name)
        if (body.features is None) == (body.instances is None):
            raise ApiError(422, "send either 'features' (one instance) or 'instances' (a list)")
        if body.instances is not None:
            if not body.instances:
                raise ApiError(422, "instances: the list is empty")
            if len(body.instances) > config.max_batch:
                raise ApiError(413, f"instances: {len(body.instances)} items; at most "
                                    f"{config.max_batch} per request")
            batch = [(f"instances[{i}]", x) for i, x in enumerate(body.instances)]
        else:
            batch = [("features", body.features)]
        try:
            answers = target.predict(batch)
        except InvalidParameterError as error:
            raise ApiError(422, str(error)) from None
        except ModelError as error:
            raise ApiError(503, f"no live version could serve: {error}") from None
        for answer in answers:
            metrics.decision(name, answer["version"])
        return answers[0] if body.features is not None else {"decisions": answers}

    @app.post("/v1/deployments/{name}/predict", openapi_extra=_body_schema(PredictBody))
    async def predict(name: str, request: Request) -> JSONResponse:
        """Route one instance (``features``) or a batch (``instances``). In production the
        fast lane below answers this route; this declaration documents it (and serves it
        if the fast lane is bypassed)."""
        scope_of(request)
        return JSONResponse(handle_predict(name, await request.body()))

    def fast_predict(scope: dict[str, Any], raw: bytes) -> tuple[int, dict[str, Any]] | None:
        """Answer POST /v1/deployments/{name}/predict without FastAPI's middleware stack,
        dependency solving and response validation, which cost more than the routing
        decision and the database write together. Other requests return None."""
        path = scope["path"]
        if scope["method"] != "POST" or not path.startswith(PREFIX) or not path.endswith(
                "/predict"):
            return None
        name = path[len(PREFIX):-len("/predict")]
        if "/" in name:
            return None
        headers = dict(scope["headers"])
        try:
            scope_of_headers(headers.get(b"authorization", b"").decode("latin-1"),
                             headers.get(b"x-api-key", b"").decode("latin-1"))
            return 200, handle_predict(name, raw)
        except ApiError as error:
            return error.status, {"detail": error.message}
        except Exception as error:  # the same promise as the framework's handler below
            log.exception("unexpected error on %s", path)
            return 500, {"detail": f"internal error ({type(error).__name__}); see the server "
                                   "log"}

    @app.post("/v1/deployments/{name}/feedback", dependencies=[Depends(client)])
    async def feedback(name: str, body: FeedbackItem | list[FeedbackItem]) -> Any:
        target = find(name)
        items = body if isinstance(body, list) else [body]
        if not items:
            raise ApiError(422, "feedback: the list is empty")
        if len(items) > config.max_batch:
            raise ApiError(413, f"feedback: {len(items)} items; at most {config.max_batch} "
                                "per request")
        outcomes = target.feedback([(item.decision_id, item.label) for item in items])
        for outcome in outcomes:
            if outcome.status == "recorded":
                metrics.feedback_received(name, outcome.version, outcome.reward or 0.0)
        results = [{"decision_id": o.decision_id, "status": o.status, "reward": o.reward,
                    **({"detail": o.message} if o.message else {})} for o in outcomes]
        if isinstance(body, list):
            return {"results": results}
        outcome = outcomes[0]
        if outcome.status != "recorded":
            raise ApiError(FEEDBACK_STATUS[outcome.status], outcome.message)
        return results[0]

    @app.get("/v1/deployments", dependencies=[Depends(client)])
    async def list_deployments() -> dict[str, Any]:
        return {"deployments": [
            {"name": n, "policy": d.config.policy,
             "live_versions": d.deployment.live_versions} for n, d in deployments.items()]}

    @app.get("/v1/deployments/{name}", dependencies=[Depends(client)])
    async def show(name: str) -> dict[str, Any]:
        return find(name).report()

    @app.get("/v1/deployments/{name}/events", dependencies=[Depends(client)])
    async def show_events(name: str, since: int = 0, limit: int = 100) -> dict[str, Any]:
        find(name)
        if since < 0 or not 1 <= limit <= 1000:
            raise ApiError(422, "since must be >= 0 and limit between 1 and 1000")
        return {"events": store.events(name, since, limit)}

    @app.post("/v1/deployments/{name}/versions", dependencies=[Depends(admin)],
              status_code=201)
    async def register(name: str, body: VersionBody) -> dict[str, Any]:
        target = find(name)
        try:
            target.register(body.name, _artifact_path(config, body.artifact),
                            body.validation_score)
        except DuplicateArmError as error:
            raise ApiError(409, str(error)) from None
        except ArtifactError as error:
            raise ApiError(422, str(error)) from None
        return {"name": body.name, "status": "live"}

    @app.post("/v1/deployments/{name}/versions/{version}/rollback",
              dependencies=[Depends(admin)])
    async def rollback(name: str, version: str, body: ReasonBody | None = None
                       ) -> dict[str, Any]:
        target = find(name)
        try:
            target.rollback(version, (body or ReasonBody()).reason)
        except UnknownArmError as error:
            raise ApiError(404, str(error)) from None
        except InvalidParameterError as error:
            raise ApiError(409, str(error)) from None
        return {"name": version, "status": "rolled_back"}

    @app.delete("/v1/deployments/{name}/versions/{version}", dependencies=[Depends(admin)])
    async def retire(name: str, version: str) -> dict[str, Any]:
        target = find(name)
        try:
            target.retire(version, "retired through the API")
        except UnknownArmError as error:
            raise ApiError(404, str(error)) from None
        except InvalidParameterError as error:
            raise ApiError(409, str(error)) from None
        return {"name": version, "status": "retired"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        problems = [] if store.ping() else ["database unreachable"]
        problems += [f"{n}: no live version" for n, d in deployments.items()
                     if not d.deployment.live_versions]
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, 503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=metrics.content_type)

    return metrics.wrap(app, max_body_bytes=config.max_body_bytes, fast_lane=fast_predict,
                        fast_route="/v1/deployments/{name}/predict")


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()}}}}


def _parse(model: type[BaseModel], raw: bytes) -> Any:
    """The body as ``model``, or a 400 (not JSON) / 422 (naming each bad field)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"malformed JSON: {error}") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ApiError(422, describe_errors(error.errors())) from None


def _artifact_path(config: ServiceConfig, artifact: str) -> str:
    """Absolute paths as given; relative ones are looked up in each artifact folder."""
    path = Path(artifact)
    if path.is_absolute():
        return str(path)
    for folder in config.artifact_dirs:
        if (folder / path).exists():
            return str(folder / path)
    return str((config.artifact_dirs[0] if config.artifact_dirs else Path.cwd()) / path)

