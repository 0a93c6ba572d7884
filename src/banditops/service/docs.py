"""The API described for its users: answer models, errors, tags, examples and keys in the
OpenAPI description, and the ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) pages.

The endpoints send ``Response`` objects they build themselves (and the predict route is
answered before FastAPI), so the models here only document: each is written to match what
``endpoints.py`` and the guard in ``asgi.py`` send, and ``tests/service/test_openapi.py``
checks real answers of a real server against them. The security of each operation is
derived from the guard's access map, not written twice.

The pages load Swagger UI and ReDoc from files shipped in the package (``static/``, served
at ``/static/...``), never from a CDN: the docs work on a machine without internet, and a
Content-Security-Policy keeps every request they make on this server.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from banditops.service.config import ServiceConfig
from banditops.service.exports import MAX_EXPORT_ROWS, MAX_EXPORTS
from banditops.service.features import Kind as FeatureKind
from banditops.service.features import base

SWAGGER_UI = "/static/swagger-ui-5.35.0"  # swagger-ui-dist, see static/*/SOURCE
REDOC = "/static/redoc-2.5.4"  # redoc's standalone bundle
TITLE = "banditops API"
# The pages' scripts and styles come from this server; the only connections they may open
# are to it (the description, "Try it out"); ReDoc's search runs in a blob: worker.
PAGE_POLICY = ("default-src 'none'; script-src 'self' 'unsafe-inline'; "
               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
               "connect-src 'self'; worker-src blob:; frame-ancestors 'none'; base-uri 'none'; "
               "form-action 'none'")
SCHEMES = ("bearer", "apiKey")  # names of the security schemes, either one is accepted


# ------------------------------------------------------------------ answers
class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


Scalar = str | int | float | bool


class Error(Answer):
    """Every error: what was wrong, and what to send instead."""

    detail: str = Field(description="What was wrong, in words.")


class Decision(Answer):
    """One routed prediction."""

    decision_id: str = Field(description="Send it back with the true label to "
                                         "`POST /v1/deployments/{name}/feedback`.",
                             examples=["6f1c0d2e9a8b47f3b1e2c3d4a5b6c7d8"])
    version: str = Field(description="The model version that answered.", examples=["v2"])
    prediction: Scalar = Field(description="That version's prediction.", examples=[1])
    propensity: float = Field(ge=0, le=1, description="The probability with which the policy "
                                                      "chose this version.", examples=[0.62])


class Decisions(Answer):
    """A batch: one decision per instance, in order."""

    decisions: list[Decision]


FeedbackStatus = Literal["recorded", "duplicate", "unknown", "expired", "invalid"]


class FeedbackRecorded(Answer):
    """The label was recorded and learned from."""

    decision_id: str
    status: Literal["recorded"]
    reward: float = Field(ge=0, le=1, description="The reward the label earned the version "
                                                  "that answered (accuracy: 1 right, 0 wrong).")


class FeedbackResult(Answer):
    """One item of a feedback list."""

    decision_id: str
    status: FeedbackStatus = Field(description="recorded; duplicate (already had feedback, "
                                               "counted once); unknown (no such decision); "
                                               "expired (older than the feedback window); "
                                               "invalid (a label the deployment does not "
                                               "know).")
    reward: float | None = Field(description="The reward when recorded, else null.")
    detail: str = Field(default=None, description="Why, when not recorded (absent otherwise).",
                        json_schema_extra=lambda schema: schema.pop("default", None))


class FeedbackResults(Answer):
    """One result per item sent, in order."""

    results: list[FeedbackResult]


class DeploymentSummary(Answer):
    name: str
    policy: str = Field(description="The bandit policy, e.g. thompson, ucb1, epsilon-greedy.")
    live_versions: list[str] = Field(description="The versions serving traffic now.")


class Deployments(Answer):
    deployments: list[DeploymentSummary]


class ModelCalls(Answer):
    """Timings of this version's model calls on this server."""

    calls: int
    slow: int = Field(description="Calls judged too slow.")
    median_ms: float | None
    median_cpu_ms: float | None
    last_ms: float | None
    tripped: bool = Field(description="Whether the version was taken down for being slow.")


VersionStatus = Literal["live", "dark", "rolled_back", "quarantined", "retired"]


class VersionState(Answer):
    name: str
    status: VersionStatus = Field(description="live serves traffic; dark is scored on the "
                                              "labels but serves nobody; rolled_back and "
                                              "quarantined were taken down (reinstate puts "
                                              "them back); retired is gone for good.")
    traffic_share: float = Field(ge=0, le=1, description="The share of requests the policy "
                                                         "sends it now; for a contextual "
                                                         "policy, its probability for an "
                                                         "average request (the split served "
                                                         "is in .../history).")
    decisions: int
    feedbacks: int
    reward_mean: float | None
    ci_low: float | None = Field(description="Lower end of the 95 % interval of the mean "
                                             "reward.")
    ci_high: float | None
    validation_score: float | None
    learned: int = Field(description="Rewards this server learned from.")
    learned_reward_sum: float
    shadow_rewards: int = Field(description="Rewards of its shadow predictions (scored on "
                                            "requests another version answered).")
    shadow_reward_mean: float | None
    judgement: Literal["evaluating", "not judged yet", "ok", "worse"] | None = Field(
        description="evaluating for a dark version; the guardrail's verdict for a live one.")
    guardrail_rewards: int | None = Field(
        description="Rewards the guardrail judges a live version on: those since it went "
                    "live or was reinstated (the last `window` for welch and bayes). It is "
                    "`not judged yet` until it and another live version have "
                    "`guardrail_min_samples`. null: not live, or no guardrail.")
    model_calls: ModelCalls | None


class DeploymentState(Answer):
    """A deployment and each of its versions."""

    name: str
    policy: str
    features: dict[str, FeatureKind] = Field(
        description="The features every instance must have, with their types; a type "
                    "ending in `?` may be null.")
    labels: list[Scalar] | None = Field(description="The classes feedback labels must be one "
                                                    "of, when declared.")
    shadow: Literal["all", "rate", "evaluating"] | None = Field(
        description="How versions are scored on requests they did not answer; null: not.")
    release: Literal["live", "dark"] = Field(description="Whether a new version starts live "
                                                         "or dark.")
    guardrail_min_samples: int | None = Field(
        description="Rewards a live version needs before the guardrail judges it; null: "
                    "no guardrail.")
    contextual: bool = Field(description="Whether the policy routes each request on its "
                                         "features.")
    log_features: bool = Field(description="Whether each decision's features are kept in "
                                           "the decision log (for off-policy evaluation).")
    versions: list[VersionState]
    restored_snapshot_feedback_seq: int | None


class Event(Answer):
    """Something that happened to a version: registered, promoted, rolled_back,
    quarantined, reinstated, retired, or a policy decision."""

    seq: int = Field(description="Pass the last one + 1 as `since` to read on.")
    deployment: str
    time: float = Field(description="Unix time, seconds.")
    kind: str = Field(examples=["rolled_back"])
    version: str | None
    reason: str
    evidence: dict[str, Any] = Field(description="The numbers behind an automatic decision.")


class Events(Answer):
    events: list[Event]


class VersionHistory(Answer):
    """One version's figures, one list entry per bucket, oldest first."""

    name: str
    decisions: list[int] = Field(description="Decisions made in the bucket.")
    feedbacks: list[int] = Field(description="Feedback that arrived in the bucket.")
    reward_sum: list[float]
    reward_mean: list[float | None] = Field(description="null: no feedback in the bucket.")
    ci_low: list[float | None] = Field(description="Lower end of the 95 % interval of the "
                                                   "mean reward.")
    ci_high: list[float | None]
    traffic_share: list[float | None] = Field(
        description="Its share of the bucket's decisions; null: no decision in the bucket.")


class History(Answer):
    """Traffic and reward per time bucket and version, from the decision log."""

    deployment: str
    minutes: int
    buckets: int
    bucket_seconds: float
    start: float = Field(description="Unix time of the first bucket's start.")
    end: float = Field(description="Unix time of the last bucket's end (a multiple of "
                                   "bucket_seconds; the last bucket is the current one).")
    interval: str = Field(description="How the 95 % intervals are computed.")
    decisions: list[int] = Field(description="All versions' decisions per bucket.")
    feedbacks: list[int] = Field(description="All versions' feedback per bucket.")
    versions: list[VersionHistory]


class VersionAnswer(Answer):
    """A version's status after the change."""

    name: str
    status: VersionStatus


class Registered(VersionAnswer):
    """A new version; uploads and model-registry URIs also say which bytes were loaded."""

    sha256: str | None = Field(default=None, description="SHA-256 of the artifact's bytes.")
    artifact: str | None = Field(
        default=None, description="How to register the same bytes again, e.g. "
                                  "`upload:<sha256>.skops`.")
    size: int | None = Field(default=None, description="Bytes received (uploads).")


class Health(Answer):
    status: Literal["ok"]


class Ready(Answer):
    status: Literal["ready"]


class NotReady(Answer):
    status: Literal["not ready"]
    problems: list[str] = Field(examples=[["database unreachable"]])


# ------------------------------------------------------------------ routes
TAGS = [
    {"name": "predictions", "description": "Route requests to model versions and send back "
                                           "the ground truth."},
    {"name": "deployments", "description": "What each deployment serves and what happened."},
    {"name": "admin", "description": "Change versions, export the decision log (admin keys "
                                     "only)."},
    {"name": "operations", "description": "Health, readiness and Prometheus metrics (no key)."},
]
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying; sent when the "
                                              "server is overloaded or its database does not "
                                              "answer.", "schema": {"type": "integer"}}}
EXPORT_HEADERS = {
    "X-Banditops-Rows": {"description": "Decisions in the file.",
                         "schema": {"type": "integer"}},
    "X-Banditops-Truncated": {"description": "`true` when the range holds more decisions "
                                             "than `limit`.",
                              "schema": {"type": "string", "enum": ["true", "false"]}},
    "Content-Disposition": {"description": "`attachment; filename=\"<name>-decisions.<format>\"`",
                            "schema": {"type": "string"}}}
KEYED = {401: "No API key, a malformed or unknown one, or more than one key header."}
ADMIN = {**KEYED, 403: "The key has the client scope; this route needs an admin key."}
BODY = {400: "The body is not valid JSON (or a malformed Content-Length).",
        408: "The body did not arrive in time.",
        413: "The body is over the size limit.",
        415: "A Content-Type other than application/json."}
BUSY = {503: "The server is overloaded or its database does not answer: retry after "
             "Retry-After seconds."}
NO_DEPLOYMENT = "No deployment of that name."
# What the server says, as it says it (a route may give its own example instead).
SAID = {400: "malformed JSON: Expecting value: line 1 column 1 (char 0)",
        401: "missing API key: send 'Authorization: Bearer <key>'",
        403: "this API key has the client scope; this needs admin",
        404: "unknown deployment 'nope'; deployments: ['main']",
        409: "version v2 is not live (status rolled_back)",
        415: "Content-Type 'text/plain': send application/json",
        422: "reason: Input should be a valid string",
        503: "deployment main has 1000 requests waiting; retry later"}


def _errors(errors: dict[int, str], examples: dict[int, str]
            ) -> dict[int | str, dict[str, Any]]:
    """Error answers, each ``{"detail": ...}`` with an example of what the server says."""
    answers: dict[int | str, dict[str, Any]] = {}
    for status, text in sorted(errors.items()):
        said = examples.get(status)
        answer: dict[str, Any] = {"model": Error, "description": text}
        if said:
            answer["content"] = {"application/json": {"example": {"detail": said}}}
        if status == 503:
            answer["headers"] = RETRY_AFTER
        answers[status] = answer
    return answers


def _ok(model: Any, text: str, status: int = 200, example: Any = None
        ) -> dict[int | str, dict[str, Any]]:
    answer: dict[str, Any] = {"model": model, "description": text}
    if example is not None:
        answer["content"] = {"application/json": {"example": example}}
    return {status: answer}


DECISION = {"decision_id": "6f1c0d2e9a8b47f3b1e2c3d4a5b6c7d8", "version": "v2",
            "prediction": 1, "propensity": 0.62}


def routes(config: ServiceConfig) -> dict[str, dict[str, Any]]:
    """``add_api_route`` keyword arguments for each documented route, by endpoint name."""
    about = _routes(config)
    for name, kwargs in about.items():
        kwargs["operation_id"] = name
    return about


def _routes(config: ServiceConfig) -> dict[str, dict[str, Any]]:
    batch, size = config.max_batch, config.max_body_bytes
    names = sorted(config.deployments)
    first = names[0] if names else "main"
    said = {**SAID, 408: f"the request body did not arrive within "
                         f"{config.body_timeout_seconds:g} s",
            413: f"request body over the {size:,}-byte limit",
            # this server's own deployments, as its answers name them
            404: f"unknown deployment 'nope'; deployments: {names[:20]}",
            503: f"deployment {first} has {config.max_queue} requests waiting; retry later"}

    def errors(texts: dict[int, str], examples: dict[int, str] | None = None
               ) -> dict[int | str, dict[str, Any]]:
        return _errors(texts, {**said, **(examples or {})})

    body = {**BODY, 413: f"The body is over {size:,} bytes, or holds more than {batch} items."}
    change = {**ADMIN, **body, 404: "No deployment or version of that name.",
              409: "The version cannot make this change now (e.g. reinstating a live "
                   "version, or taking down the last live one).",
              422: "An invalid body.", **BUSY}
    return {
        "predict": dict(
            tags=["predictions"], summary="Route a request to a model version",
            description=(
                "Sends one instance (`features`) or a batch (`instances`, at most "
                f"{batch}) to a live version chosen by the deployment's policy, and answers "
                "that version's prediction with a `decision_id`. Keep the id: send the true "
                "label for it later to `POST /v1/deployments/{name}/feedback`, which is how "
                "the policy learns which version is best.\n\nEach instance must have exactly "
                "the deployment's features with their types (see "
                "`GET /v1/deployments/{name}`); `null` only for a type ending in `?`. "
                "`propensity` is the probability the policy "
                "gave the chosen version."),
            responses={**_ok(Decision | Decisions, "One decision, or `decisions` for a batch.",
                             example=DECISION),
                       **errors({**KEYED, **body, 404: NO_DEPLOYMENT,
                                  422: "An invalid instance (missing, unknown or mistyped "
                                       "feature), or neither or both of features/instances.",
                                  503: "No live version could serve, or the server is "
                                       "overloaded (then with Retry-After)."},
                                 {422: "features: missing feature(s) ['x3']",
                                  503: "no live version could serve: ..."})}),
        "feedback": dict(
            tags=["predictions"], summary="Send the true label of a decision",
            description=(
                "The ground truth for a decision: `{decision_id, label}`, or a list of them "
                f"(at most {batch}). The label becomes a reward for the version that answered, "
                "and the policy and the guardrail learn from it; each decision counts once."
                "\n\nOne item answers 200 when it is recorded, or an error status saying why "
                "not. A list always answers 200, with a result per item in order, each with "
                "its own `status`."),
            responses={**_ok(FeedbackRecorded | FeedbackResults,
                             "The recorded feedback, or `results` for a list.",
                             example={"decision_id": DECISION["decision_id"],
                                      "status": "recorded", "reward": 1.0}),
                       **errors({**KEYED, **body,
                                  404: "No such deployment, or no such decision (or one made "
                                       "with another key, when the deployment requires the "
                                       "same key).",
                                  409: "The decision already had feedback; it is counted "
                                       "once.",
                                  410: "The decision is older than the deployment's feedback "
                                       "window.",
                                  422: "An invalid body, or a label the deployment does not "
                                       "know.", **BUSY},
                                 {404: "unknown decision id 'abc'",
                                  409: "decision 6f1c0d2e9a8b47f3b1e2c3d4a5b6c7d8 already has "
                                       "feedback; counted once",
                                  422: "label 7 (int) is not one of the known classes [0, 1]"})}),
        "list_deployments": dict(
            tags=["deployments"], summary="List deployments",
            description="Each deployment with its policy and the versions serving now.",
            responses={**_ok(Deployments, "The deployments."), **errors(KEYED)}),
        "show": dict(
            tags=["deployments"], summary="Show a deployment and its versions",
            description=(
                "The deployment's features and labels, and for each version its status, "
                "traffic share, decisions, feedback, mean reward with its 95 % interval, "
                "and the guardrail's judgement. With `max_age`, a report computed at most "
                "that many seconds ago may be answered (the dashboard sends 2)."),
            responses={**_ok(DeploymentState, "The deployment."),
                       **errors({**KEYED, 404: NO_DEPLOYMENT,
                                  422: "`max_age` out of range (0 to 10 seconds).", **BUSY},
                                 {422: "max_age: Input should be greater than or equal to 0"})}),
        "events": dict(
            tags=["deployments"], summary="Read a deployment's events",
            description=(
                "What happened to its versions, oldest first: registrations, promotions, "
                "rollbacks and quarantines with the evidence behind them, reinstatements, "
                "retirements. Read on with `since` = the last `seq` + 1."),
            responses={**_ok(Events, "Events with `seq` >= `since`, at most `limit`."),
                       **errors({**KEYED, 404: NO_DEPLOYMENT,
                                  422: "`since` or `limit` out of range.", **BUSY},
                                 {422: "limit: Input should be greater than or equal to 1"})}),
        "history": dict(
            tags=["deployments"], summary="Traffic and reward over time",
            description=(
                "The last `minutes` cut into `buckets` equal buckets: per bucket and version, "
                "decisions (by when they were made), feedback and reward (by when it "
                "arrived), the mean reward with its 95 % interval (Wilson's when every reward "
                "is 0 or 1, Student's t otherwise) and the traffic share. From the decision "
                "log, so the same on every replica; an answer is shared for 2 s."),
            responses={**_ok(History, "The buckets, oldest first."),
                       **errors({**KEYED, 404: NO_DEPLOYMENT,
                                  422: "`minutes` or `buckets` out of range.", **BUSY},
                                 {422: "minutes: Input should be less than or equal to "
                                       "1440"})}),
        "export": dict(
            tags=["admin"], summary="Export the decision log",
            description=(
                "The deployment's decisions (every replica's), oldest first, as a Parquet or "
                "CSV file in the decision-log format that `banditops evaluate` reads: "
                "`decision_id`, `time`, `version`, `propensity` (the chance the policy gave "
                "that version), `reward` (empty until feedback came), `live` (a JSON list of "
                "the versions live then), `feature:<name>` for each request feature logged "
                "(the deployment's `log_features`, or a contextual policy), and "
                "`reward:<version>` for each shadow-scored version.\n\nDecisions with "
                f"`since` <= time < `until`, at most `limit` (at most {MAX_EXPORT_ROWS:,}); "
                "`X-Banditops-Truncated: true` says the range holds more: ask again with "
                "`since` = the last row's `time` and drop the ids already read (a batch's "
                f"decisions share their time). At most {MAX_EXPORTS} exports run at once. "
                "The answer is streamed; a failure in the middle ends the transfer "
                "incomplete, never as a short file."),
            responses={200: {"description": "The file (`Content-Disposition: attachment`).",
                             "content": {
                                 "application/vnd.apache.parquet": {
                                     "schema": {"type": "string", "format": "binary"}},
                                 "text/csv": {"schema": {"type": "string"}}},
                             "headers": EXPORT_HEADERS},
                       **errors({**ADMIN, 404: NO_DEPLOYMENT,
                                 422: "`format`, `since`, `until` or `limit` out of range, "
                                      "or `since` after `until`.",
                                 503: f"{MAX_EXPORTS} exports are under way, or the database "
                                      "does not answer: retry after Retry-After seconds."},
                                {422: "since (20.0) is after until (10.0); the export holds "
                                      "decisions with since <= time < until",
                                 503: f"{MAX_EXPORTS} decision-log exports are under way; at "
                                      f"most {MAX_EXPORTS} at once: retry when one has "
                                      "finished"})}),
        "register": dict(
            tags=["admin"], summary="Register a model version", status_code=201,
            description=(
                "Loads the model file `artifact` (a path on the server; a relative one is "
                "looked up in the configured artifact folders), checks it in a separate "
                "process, and adds it as a version: live, or dark when the deployment "
                "releases dark (scored on the labels before it serves)."),
            responses={**_ok(Registered, "The new version and its status.", 201,
                             {"name": "v3", "status": "live"}),
                       **errors({**ADMIN, **body, 404: NO_DEPLOYMENT,
                                  409: "A version of that name exists.",
                                  422: "An invalid body, or an artifact that cannot be "
                                       "loaded or does not fit the deployment.", **BUSY},
                                 {409: "version 'v3' is registered already (status live); "
                                       "use a new version name"})}),
        "upload": dict(
            tags=["admin"], summary="Upload a model version", status_code=201,
            description=(
                "Registers a version from a model file sent in the request "
                "(`multipart/form-data`: `version`, optional `validation_score`, and the "
                "file `artifact`, whose suffix says its format: `.skops`, `.onnx`, or "
                "`.joblib`/`.pkl` where the server allows pickles), so no access to the "
                "server's disk is needed. At most "
                f"{config.max_upload_bytes:,} bytes. The file is checked like any artifact; "
                "its bytes are kept in the database, so restarts and other replicas load "
                "it. The answer gives its SHA-256."),
            responses={**_ok(Registered, "The new version, its status and its bytes' SHA-256.",
                             201, {"name": "v3", "status": "live", "sha256": "9f2c" + "0" * 60,
                                   "size": 48213, "artifact": "upload:9f2c" + "0" * 60
                                   + ".skops"}),
                       **errors({**ADMIN, 400: "A malformed multipart body.",
                                  404: NO_DEPLOYMENT,
                                  408: "The upload did not arrive in time.",
                                  409: "A version of that name exists.",
                                  413: f"The file is over {config.max_upload_bytes:,} bytes.",
                                  415: "The body is not multipart/form-data.",
                                  422: "A missing or invalid field, or an artifact that "
                                       "cannot be loaded or does not fit the deployment.",
                                  **BUSY},
                                 {408: "the upload did not arrive in time",
                                  409: "version 'v3' is registered already (status live); "
                                       "use a new version name",
                                  413: f"upload over the {config.max_upload_bytes:,}-byte "
                                       "limit",
                                  415: "send the artifact as multipart/form-data"})}),
        "rollback": dict(
            tags=["admin"], summary="Roll a version back",
            description="Takes a live or dark version out of service, with an optional "
                        "`reason` recorded in its event. `reinstate` undoes it.",
            responses={**_ok(VersionAnswer, "The version, now rolled back.",
                             example={"name": "v2", "status": "rolled_back"}),
                       **errors(change)}),
        "reinstate": dict(
            tags=["admin"], summary="Reinstate a version",
            description="Puts a rolled-back or quarantined version live again.",
            responses={**_ok(VersionAnswer, "The version, live again.",
                             example={"name": "v2", "status": "live"}),
                       **errors(change)}),
        "promote": dict(
            tags=["admin"], summary="Promote a dark version",
            description="Puts a dark version live before its shadow evidence decides.",
            responses={**_ok(VersionAnswer, "The version, now live.",
                             example={"name": "v3", "status": "live"}),
                       **errors(change)}),
        "retire": dict(
            tags=["admin"], summary="Retire a version",
            description="Takes a version out for good, with an optional `reason` recorded "
                        "in its event; its decisions and events stay.",
            responses={**_ok(VersionAnswer, "The version, now retired.",
                             example={"name": "v1", "status": "retired"}),
                       **errors(change)}),
        "healthz": dict(
            tags=["operations"], summary="Liveness",
            description="Answers while the process runs (checks no database).",
            responses=_ok(Health, "The process answers.")),
        "readyz": dict(
            tags=["operations"], summary="Readiness",
            description="Ready when the database answers and every deployment has a live "
                        "version.",
            responses={**_ok(Ready, "Ready to serve."),
                       503: {"model": NotReady, "description": "Not ready, and why."}}),
        "prometheus": dict(
            tags=["operations"], summary="Prometheus metrics",
            description="Requests, decisions, feedback, rewards and model-call latency per "
                        "deployment and version, in the Prometheus text format.",
            responses={200: {"description": "The metrics.",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}}),
    }


# ------------------------------------------------------------ the description
def body_examples(config: ServiceConfig) -> dict[str, dict[str, Any]]:
    """Request examples that fit this server's first deployment, so "Try it out" works."""
    spec = next(iter(config.deployments.values()), None)
    features = ({feature: 1.0 if base(kind) == "number" else "text"
                 for feature, kind in spec.features.items()} if spec else {"x0": 1.0})
    label = (spec.labels[0] if spec is not None and getattr(spec, "labels", None) else 1)
    return {
        "predict": {"one": {"summary": "One instance", "value": {"features": features}},
                    "batch": {"summary": "A batch",
                              "value": {"instances": [features, features]}}},
        "feedback": {"one": {"summary": "One label",
                             "value": {"decision_id": DECISION["decision_id"], "label": label}},
                     "list": {"summary": "A list of labels",
                              "value": [{"decision_id": DECISION["decision_id"],
                                         "label": label}]}},
        "register": {"one": {"summary": "A model file",
                             "value": {"name": "v3", "artifact": "model-v3.skops",
                                       "validation_score": 0.91}}},
        "change": {"reason": {"summary": "With a reason",
                              "value": {"reason": "worse on the new traffic"}}},
    }


DESCRIPTION = """\
Route each prediction request to one of a deployment's model versions, chosen by a
multi-armed bandit; send back the ground truth later as feedback, and the policy learns
which version is best. A version that does clearly worse than the best is rolled back
automatically.

**Flow.** `POST /v1/deployments/{name}/predict` answers a prediction with a `decision_id`;
`POST /v1/deployments/{name}/feedback` with that id and the true label teaches the policy.
`GET /v1/deployments/{name}` shows each version's traffic share and reward.

**Keys.** Every `/v1` route needs an API key, sent either as `Authorization: Bearer <key>`
or as an `X-API-Key: <key>` header (one of them, not both). Client keys predict, send
feedback and read; admin keys may also register, roll back, reinstate, promote and retire
versions. In Swagger UI (`/docs`), click **Authorize** and fill in one of the two.

**Errors** answer `{"detail": "..."}` saying what was wrong. A 503 with `Retry-After` means
the server is overloaded or its database does not answer: retry after that many seconds.
"""


def describe(app: FastAPI, config: ServiceConfig, access: dict[tuple[str, str], str | None]
             ) -> dict[str, Any]:
    """The OpenAPI description: FastAPI's, with the keys each operation needs (from the
    guard's ``access`` map), request examples for this server, and none of FastAPI's own
    validation-error schema (this service answers ``{"detail": str}``)."""
    schema = get_openapi(title=TITLE, version=app.version, description=DESCRIPTION,
                         routes=app.routes, tags=TAGS)
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "`Authorization: Bearer <key>`"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                   "description": "`X-API-Key: <key>` (instead of the bearer header)"},
    }
    examples = body_examples(config)
    names = list(config.deployments)
    versions = [v.name for spec in config.deployments.values() for v in spec.versions]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            scope = access.get((method.upper(), path), "admin")  # as the guard decides
            if scope is None:
                operation["security"] = []
            else:
                operation["security"] = [{name: [scope]} for name in SCHEMES]
                operation["description"] += (
                    "\n\n**Key:** admin scope." if scope == "admin" else
                    "\n\n**Key:** client scope (an admin key works too).")
            for status, answer in list(operation.get("responses", {}).items()):
                body = answer.get("content", {}).get("application/json", {}).get("schema", {})
                if status == "422" and body.get("$ref", "").endswith("/HTTPValidationError"):
                    del operation["responses"][status]  # FastAPI's, never sent here
                body.pop("title", None)  # "Response 200 Predict V1 ...": says nothing
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "name" and names:
                    parameter["example"] = names[0]
                    parameter["description"] = "The deployment: " + ", ".join(names[:20])
                elif parameter["in"] == "path" and parameter["name"] == "version":
                    parameter["description"] = "The version's name"
                    if versions:
                        parameter["example"] = versions[0]
            content = operation.get("requestBody", {}).get("content", {}).get(
                "application/json")
            if content is not None:
                kind = path.rsplit("/", 1)[-1]
                key = (kind if kind in ("predict", "feedback") else
                       "register" if kind == "versions" else "change")
                content["examples"] = examples[key]
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"].get("schemas", {}).pop(name, None)
    return schema


def install(app: FastAPI, config: ServiceConfig,
            access: dict[tuple[str, str], str | None]) -> None:
    """Serve the description (built once, on its first request) at ``app.openapi_url``."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(app, config, access)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# -------------------------------------------------------------------- pages
async def swagger_page() -> HTMLResponse:
    """Swagger UI: try each route with a key; the key is kept in the page only (never in
    the browser's storage)."""
    page = get_swagger_ui_html(
        openapi_url="/openapi.json", title=TITLE,
        swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
        oauth2_redirect_url=None,
        swagger_ui_parameters={"persistAuthorization": False, "validatorUrl": None,
                               "displayRequestDuration": True, "tryItOutEnabled": False,
                               "defaultModelsExpandDepth": 0})
    page.headers["content-security-policy"] = PAGE_POLICY
    page.headers["x-content-type-options"] = "nosniff"
    page.headers["cache-control"] = "no-cache"
    return page


async def redoc_page() -> HTMLResponse:
    """ReDoc: the whole API on one page, to read."""
    page = get_redoc_html(openapi_url="/openapi.json", title=TITLE,
                          redoc_js_url=f"{REDOC}/redoc.standalone.js",
                          redoc_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
                          with_google_fonts=False)
    page.headers["content-security-policy"] = PAGE_POLICY
    page.headers["x-content-type-options"] = "nosniff"
    page.headers["cache-control"] = "no-cache"
    return page
