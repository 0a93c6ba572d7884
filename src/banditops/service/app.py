"""The HTTP service: wiring only. Routes -> ``endpoints.Endpoints`` methods, one error table,
metrics, workers, and the ASGI guard in front (``asgi.py``: limits before bodies).

Nothing here does I/O when called: the database migration, the lock, and loading each
deployment (models, snapshots, catch-up) run in the lifespan, in a thread, unless
``banditops serve`` ran them already (so a start-up error is one clear line).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from banditops import __version__
from banditops.deployment import Event
from banditops.errors import BanditOpsError, OverloadedError
from banditops.service import docs
from banditops.service.asgi import Guard, Limits
from banditops.service.assets import Assets
from banditops.service.config import ServiceConfig, describe_errors
from banditops.service.dashboard import Dashboard
from banditops.service.endpoints import (
    Endpoints,
    FeedbackItem,
    HttpError,
    PredictBody,
    ReasonBody,
    VersionBody,
    body_schema,
    error_answer,
    respond,
)
from banditops.service.metrics import Metrics
from banditops.service.runtime import ServiceDeployment
from banditops.service.sources import Sources
from banditops.service.workers import Workers
from banditops.store.sql import Store

log = logging.getLogger("banditops.service")
# What an operator reads in the log as it happens, not only in /events.
LOGGED_EVENTS = ("registered", "rolled_back", "quarantined", "reinstated", "retired",
                 "promoted")
D = "/v1/deployments"
V = D + "/{name}/versions/{version}"
UPLOAD = D + "/{name}/versions/upload"  # streamed: the endpoint reads the body (uploads.py)
UPLOAD_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["version", "artifact"], "properties": {
        "version": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,100}$"},
        "validation_score": {"type": "number", "minimum": 0, "maximum": 1},
        "artifact": {"type": "string", "format": "binary",
                     "description": ".skops or .onnx (.joblib/.pkl with allow_pickle)"}}}}}}}


def create_app(config: ServiceConfig, store: Store | None = None) -> Guard:
    """The ASGI application for a checked config (no I/O until its lifespan starts)."""
    store = store or Store(config.database, timeout_seconds=config.db_timeout_seconds,
                           logs=len(config.deployments))
    metrics = Metrics()
    keys = config.keys()  # ConfigError for a short key from the environment

    def on_event(deployment: str, event: Event) -> None:
        """Take-downs are counted and logged (one structured line each), not only stored."""
        if event.kind in LOGGED_EVENTS:
            fields = {"deployment": deployment, "version": event.version, "kind": event.kind,
                      "reason": event.reason}
            level = logging.WARNING if event.kind in ("rolled_back", "quarantined") else (
                logging.INFO)
            log.log(level, "version %s %s", event.version, event.kind.replace("_", " "),
                    extra={"fields": fields})
        if event.kind in ("rolled_back", "quarantined"):
            metrics.taken_down(deployment, event.kind)

    sources = Sources(config, store)  # uploads and MLflow models, cached for all deployments
    deployments = {name: ServiceDeployment(name, spec, config, store, on_event=on_event,
                                           on_model_call=metrics.model_call, sources=sources)
                   for name, spec in config.deployments.items()}
    workers = Workers(store, deployments, max_queue=config.max_queue,
                      micro_batch=config.micro_batch, shadow_queue=config.shadow_queue,
                      on_shadow=metrics.shadow_work)
    for name, deployment in deployments.items():
        metrics.queue_depth(name, lambda w=workers[name]: w.depth)
        if deployment.shadow_mode is not None:
            metrics.shadow_queue_depth(name, lambda w=workers[name]: w.shadow_depth)
    endpoints = Endpoints(config, store, deployments, workers, metrics, sources)
    assets = Assets()
    dashboard = Dashboard(assets)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        await asyncio.to_thread(workers.startup)  # skipped if `serve` ran it
        workers.start_threads()
        task = (asyncio.create_task(_catch_up(workers, config.sync_interval_seconds))
                if store.dialect != "sqlite" else None)  # one process owns a SQLite file
        yield
        if task is not None:
            task.cancel()
        await asyncio.to_thread(workers.shutdown)
        await asyncio.to_thread(store.close)
        await asyncio.to_thread(sources.close)  # before uvicorn re-raises SIGTERM

    # /docs and /redoc are served below from the package's files (docs.py), not a CDN
    app = FastAPI(title=docs.TITLE, version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    app.state.store = store
    app.state.deployments = deployments
    app.state.workers = workers

    # route, method, endpoint, who may call it, OpenAPI extras (what docs.py says of it)
    about = docs.routes(config)
    routes: list[tuple[str, str, Any, str | None, dict[str, Any]]] = [
        (f"{D}/{{name}}/predict", "POST", endpoints.predict, "client",
         {"openapi_extra": body_schema(PredictBody)}),
        (f"{D}/{{name}}/feedback", "POST", endpoints.feedback, "client",
         {"openapi_extra": body_schema(FeedbackItem, list_of=True)}),
        (D, "GET", endpoints.list_deployments, "client", {}),
        (f"{D}/{{name}}", "GET", endpoints.show, "client", {}),
        (f"{D}/{{name}}/events", "GET", endpoints.events, "client", {}),
        (f"{D}/{{name}}/history", "GET", endpoints.history, "client", {}),
        (f"{D}/{{name}}/decisions/export", "GET", endpoints.export, "admin", {}),
        (f"{D}/{{name}}/versions", "POST", endpoints.register, "admin",
         {"openapi_extra": body_schema(VersionBody)}),
        (UPLOAD, "POST", endpoints.upload, "admin", {"openapi_extra": UPLOAD_SCHEMA}),
        (f"{V}/rollback", "POST", endpoints.rollback, "admin",
         {"openapi_extra": body_schema(ReasonBody, required=False)}),
        (f"{V}/reinstate", "POST", endpoints.reinstate, "admin",
         {"openapi_extra": body_schema(ReasonBody, required=False)}),
        (f"{V}/promote", "POST", endpoints.promote, "admin",
         {"openapi_extra": body_schema(ReasonBody, required=False)}),
        (V, "DELETE", endpoints.retire, "admin",
         {"openapi_extra": body_schema(ReasonBody, required=False)}),
        ("/healthz", "GET", endpoints.healthz, None, {}),
        ("/readyz", "GET", endpoints.readyz, None, {}),
        ("/metrics", "GET", endpoints.prometheus, None, {}),
        ("/static/{path:path}", "GET", assets.serve, None, {"include_in_schema": False}),
        ("/docs", "GET", docs.swagger_page, None, {"include_in_schema": False}),
        ("/redoc", "GET", docs.redoc_page, None, {"include_in_schema": False}),
        ("/dashboard", "GET", dashboard.page, None, {"include_in_schema": False}),
    ]
    access: dict[tuple[str, str], str | None] = {}
    for path, method, endpoint, scope, extra in routes:
        app.add_api_route(path, endpoint, methods=[method], response_class=Response,
                          **extra, **about.get(endpoint.__name__, {}))
        access[(method, path)] = scope
    access[("GET", app.openapi_url)] = None
    docs.install(app, config, access)

    async def handle(_: Request, error: Exception) -> Response:
        status, payload, headers = error_answer(error)
        response = respond(payload, status)
        for name, value in headers:
            response.headers[name.decode()] = value.decode()
        return response

    async def invalid(_: Request, error: RequestValidationError) -> Response:
        return await handle(_, HttpError(422, describe_errors(error.errors(), skip=1)))

    async def http(_: Request, error: StarletteHTTPException) -> Response:
        return await handle(_, HttpError(error.status_code, str(error.detail)))

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(BanditOpsError, handle)  # the table
    app.add_exception_handler(Exception, handle)  # a logged 500
    return Guard(app, keys=keys, access=access, metrics=metrics,
                 limits=Limits(config.max_body_bytes, config.body_timeout_seconds,
                               config.max_upload_bytes),
                 fast={("POST", f"{D}/{{name}}/predict"): endpoints.predict_payload},
                 streamed={("POST", UPLOAD)})


async def _catch_up(workers: Workers, interval: float) -> None:
    """Every ``interval``, a sync job for each deployment whose last one has finished."""
    def done(future: asyncio.Future, worker) -> None:
        worker.syncing = False
        if not future.cancelled() and future.exception() is not None:
            log.warning("catch-up of %s failed: %s", worker.deployment.name,
                        future.exception())

    while True:
        await asyncio.sleep(max(interval, 0.01))
        for worker in workers.workers.values():
            if worker.syncing:
                continue
            try:
                future = worker.call(lambda d: d.sync())
            except OverloadedError:
                continue  # busy serving: catch up next round
            worker.syncing = True
            future.add_done_callback(lambda f, w=worker: done(f, w))
