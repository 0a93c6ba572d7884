"""The service's configuration: a TOML file of named deployments, keys and limits.

``examples/config.toml`` shows every option, commented; the README's "Config reference" lists
each field with its type, default and description, generated from the models below
(``python -m banditops.service.config_reference``), so a field's ``description`` is its
documentation.

Relative paths are resolved against the config file's folder. Policy, guardrail, shadow and
release parameters are validated by the library's own parameter objects
(``EpsilonGreedyParams``, ``GuardrailParams``, ``ShadowParams``, ``ReleaseParams``, ...), so
their defaults and rules live in one place. Every mistake is a :class:`ConfigError` with one
line naming the field; a database password is never echoed. An ``artifact`` may also be an
MLflow model URI (``models:/name/3``, ``models:/name@alias``, ``runs:/<run id>/model``) or an
uploaded artifact (``upload:<sha256><suffix>``); see :mod:`banditops.service.sources`.
How the versions of the file meet those of the database at start-up:
:meth:`ServiceDeployment._restore <banditops.service.runtime.ServiceDeployment._restore>`.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from banditops.errors import BanditOpsError, InvalidParameterError
from banditops.guardrails import GuardrailParams
from banditops.policies import parse_policy_params, policy_names
from banditops.policies.base import check_seed, policy_class
from banditops.release import ReleaseParams
from banditops.rewards import Label, RewardFunction, accuracy, check_label, cost_matrix
from banditops.service.features import Kind as FeatureKind
from banditops.shadow import ShadowParams

MIN_KEY_CHARS = 16
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces
_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
_GUARDRAIL = GuardrailParams()
_SHADOW = ShadowParams()
_RELEASE = ReleaseParams()
BACKENDS = ("sqlite", "postgresql")
# A contextual policy's encoded feature vector length, at most, in a served deployment (its
# state grows with the square: see DeploymentConfig._contextual_params).
MAX_SERVICE_DIMENSION = 256


class ConfigError(BanditOpsError):
    """The configuration file is missing, unreadable or inconsistent."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# An artifact that is not a file: an upload or an MLflow model (banditops.service.sources).
ARTIFACT_URI_PREFIXES = ("upload:", "models:", "runs:")


class VersionConfig(_Strict):
    """One ``[[deployments.<name>.versions]]`` entry."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$",
                      description="The version's name (letters, digits, `.`, `_`, `-`); "
                      "never reused: a new model is a new name.")
    artifact: str = Field(
        min_length=1, max_length=4096,
        description="The model file (`.skops`, `.onnx`; `.joblib`/`.pkl` with "
        "`allow_pickle`), inside `artifact_dirs`, relative to the config file's folder; or an "
        "MLflow model URI (`models:/name/3`, `models:/name@alias`, `runs:/<run id>/<path>`, "
        "with `mlflow_tracking_uri`); or `upload:<sha256><suffix>`, an uploaded file.")
    validation_score: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Its offline validation score in [0, 1], if known (a prior for policies "
        "that use one).")


class CostMatrixConfig(_Strict):
    """A cost-matrix reward: the reward in [0, 1] of each outcome of a binary prediction."""

    tp: float = Field(ge=0, le=1, description="Reward of a true positive.")
    fp: float = Field(ge=0, le=1, description="Reward of a false positive (a false alarm).")
    fn: float = Field(ge=0, le=1, description="Reward of a false negative (a miss).")
    tn: float = Field(ge=0, le=1, description="Reward of a true negative.")


class GuardrailConfig(_Strict):
    """A deployment's guardrail section: the fields, defaults and rules of GuardrailParams."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    confidence: float = Field(
        default=_GUARDRAIL.confidence,
        description="Required confidence that a version is worse before it is rolled back, "
        "in (0.5, 1).")
    min_samples: int = Field(
        default=_GUARDRAIL.min_samples,
        description="Rewards a version (and the best) needs before it can be judged (>= 2).")
    margin: float = Field(
        default=_GUARDRAIL.margin,
        description="How much worse than the best live version (in reward units) counts as "
        "degraded.")
    method: str = Field(
        default=_GUARDRAIL.method,
        description="`sequential` (anytime-valid, checked as often as you like), `welch` "
        "(one-sided t-test) or `bayes` (posterior probability).")
    window: int = Field(  # type: ignore[assignment]  (a config always has one)
        default=_GUARDRAIL.window,
        description="Only each version's last `window` rewards count (>= min_samples); "
        "ignored by `sequential`.")
    check_every: int = Field(default=_GUARDRAIL.check_every,
                             description="Run the check every this many rewards.")

    @model_validator(mode="after")
    def _library_rules(self) -> GuardrailConfig:
        try:
            self.params()
        except InvalidParameterError as error:
            raise ValueError(str(error)) from None
        return self

    def params(self) -> GuardrailParams:
        """The library's parameter object (what ``Guardrail.from_params`` takes)."""
        return GuardrailParams(**self.model_dump())


class ShadowConfig(_Strict):
    """A deployment's shadow section: the fields, defaults and rules of ShadowParams."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    mode: str = Field(
        default=_SHADOW.mode,
        description="`all` (every other live version predicts each request), `rate` (a "
        "request is shadowed with probability `rate`) or `evaluating` (only versions with "
        "fewer than `evaluation_rewards` rewards).")
    rate: float = Field(default=_SHADOW.rate,
                        description="With mode `rate`: the share of requests shadowed, in "
                        "(0, 1].")
    evaluation_rewards: int = Field(
        default=_SHADOW.evaluation_rewards,
        description="With mode `evaluating`: rewards after which a version is no longer "
        "shadowed.")
    seed: int | None = Field(default=_SHADOW.seed,
                             description="Seed of the sampling in mode `rate` (none: random).")

    @model_validator(mode="after")
    def _library_rules(self) -> ShadowConfig:
        if "rate" in self.model_fields_set and self.mode != "rate":
            raise ValueError(f"rate applies to mode 'rate' only; mode is {self.mode!r}")
        if "evaluation_rewards" in self.model_fields_set and self.mode != "evaluating":
            raise ValueError("evaluation_rewards applies to mode 'evaluating' only; mode is "
                             f"{self.mode!r}")
        try:
            self.params()
        except InvalidParameterError as error:
            raise ValueError(str(error)) from None
        return self

    def params(self) -> ShadowParams:
        """The library's parameter object (what ``Deployment(shadow=...)`` takes)."""
        return ShadowParams(**self.model_dump())


class ReleaseConfig(_Strict):
    """A deployment's release section: the fields, defaults and rules of ReleaseParams."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    mode: str = Field(
        default=_RELEASE.mode,
        description="`dark`: a version registered while others are live serves nobody until "
        "its shadow rewards show it is not worse (`live`: it serves at once).")
    margin: float = Field(
        default=_RELEASE.margin,
        description="A dark version is promoted when it is not worse than the best live one "
        "by this much, rolled back when it is.")
    min_samples: int = Field(default=_RELEASE.min_samples,
                             description="Paired rewards before a dark version is judged.")
    check_every: int = Field(default=_RELEASE.check_every,
                             description="Judge every this many paired rewards.")
    carry: int = Field(default=_RELEASE.carry,
                       description="Shadow rewards a promoted version brings to the policy.")

    @model_validator(mode="after")
    def _library_rules(self) -> ReleaseConfig:
        try:
            self.params()
        except InvalidParameterError as error:
            raise ValueError(str(error)) from None
        return self

    def params(self) -> ReleaseParams:
        """The library's parameter object (what ``Deployment(release=...)`` takes)."""
        return ReleaseParams(**self.model_dump())


def _section(model: type[BaseModel], value: Any, disabled: str) -> Any:
    """A config section as ``model``, or False; one clear error for a bad section rather
    than one per member of the union."""
    if value is False or value is None or isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as error:
        problems = "; ".join(
            ".".join(str(p) for p in e["loc"]) + ": " * bool(e["loc"])
            + e["msg"].removeprefix("Value error, ") for e in error.errors())
        raise ValueError(f"{problems} (or false {disabled})") from None


def _label_key(label: Label) -> tuple[type, Label]:
    """Labels compare type-aware: 1, True and "1" are different classes."""
    return type(label), label


class DeploymentConfig(_Strict):
    """One ``[deployments.<name>]`` table: a model behind one predict route."""

    policy: str = Field(default="thompson",
                        description="The bandit policy: any name from "
                        "`banditops.policies.policy_names()`; a contextual one "
                        "(`linear-thompson`, `linucb`, ...) routes each request on its "
                        "features.")
    policy_params: dict[str, Any] = Field(
        default_factory=dict,
        description="The policy's parameters (checked against its Params at load), and "
        "`seed`; a contextual policy's `features` (default: all) must be features of the "
        "deployment, and its `dimension` at most 256.")
    reward: Literal["accuracy"] | CostMatrixConfig = Field(
        default="accuracy",
        description="`accuracy` (1 if the prediction equals the label), or a cost matrix "
        "`{ tp, fp, fn, tn }` for a binary label.")
    labels: list[str | int | bool] | None = Field(
        default=None, min_length=2, max_length=1000,
        description="The only labels feedback may carry (compared type-aware: 1, \"1\" and "
        "true differ); none: any.")
    positive: str | int | bool | None = Field(
        default=None, description="With a cost-matrix reward: the positive class (default 1).")
    guardrail: GuardrailConfig | Literal[False] = Field(
        default_factory=GuardrailConfig,
        description="Automatic rollback of a version worse than the best (a table, below), or "
        "`false`.")
    shadow: ShadowConfig | Literal[False] | None = Field(
        default=None,  # None: only what release implies
        description="Shadow scoring (a table, below), or `false`; default: `{ mode = "
        "\"evaluating\" }` with a dark release, else none. Invalid when the label depends on "
        "the served prediction.")
    release: ReleaseConfig | Literal[False] | None = Field(
        default=None,
        description="How new versions are released (a table, below); default: live.")
    feedback_ttl_seconds: float = Field(
        default=7 * 24 * 3600, gt=0,
        description="Feedback for an older decision is refused (410).")
    feedback_same_key: bool = Field(
        default=False,
        description="Only the API key that made a decision may give its feedback.")
    log_features: bool = Field(
        default=True,
        description="Keep every decision's features in the decision log, so that another "
        "policy, contextual ones included, can be evaluated on this traffic (`banditops "
        "evaluate` on `GET .../decisions/export`); `false` keeps them out of the database "
        "(personal data). A contextual policy logs them whatever this says: it learns each "
        "feedback on them.")
    features: dict[str, FeatureKind] = Field(
        min_length=1,
        description="The feature schema, name -> `number` or `string`, with `?` (`number?`, "
        "`string?`) when it may be `null`; every request must carry exactly these.")
    versions: list[VersionConfig] = Field(
        default_factory=list,
        description="The versions of the file (`[[deployments.<name>.versions]]`, below); "
        "reconciled with the database at start-up.")

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        if value not in policy_names():
            raise ValueError(f"unknown policy {value!r}; known: {', '.join(policy_names())}")
        return value

    @field_validator("policy_params")
    @classmethod
    def _policy_params(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        policy = info.data.get("policy")
        if policy is None:
            return value  # the policy itself is reported
        params = dict(value)
        try:
            check_seed(params.pop("seed", None))
            parse_policy_params(policy, params)
        except InvalidParameterError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("guardrail", mode="before")
    @classmethod
    def _guardrail(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("expected a table of guardrail settings or false")
        return _section(GuardrailConfig, value, "to disable the guardrail")

    @field_validator("shadow", mode="before")
    @classmethod
    def _shadow(cls, value: Any) -> Any:
        return _section(ShadowConfig, value, "for no shadow scoring")

    @field_validator("release", mode="before")
    @classmethod
    def _release(cls, value: Any) -> Any:
        return _section(ReleaseConfig, value, "to release every version live")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[Label] | None) -> list[Label] | None:
        if value is None:
            return None
        try:
            labels = [check_label(label) for label in value]
        except InvalidParameterError as error:
            raise ValueError(str(error)) from None
        if len({_label_key(label) for label in labels}) != len(labels):
            raise ValueError(f"labels repeat: {labels!r}")
        return labels

    @field_validator("positive")
    @classmethod
    def _positive(cls, value: Label | None) -> Label | None:
        try:
            return None if value is None else check_label(value)
        except InvalidParameterError as error:
            raise ValueError(str(error)) from None

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentConfig:
        if policy_class(self.policy).contextual:
            self._contextual_params()
        names = [v.name for v in self.versions]
        if len(names) != len(set(names)):
            raise ValueError(f"version names repeat: {names}")
        if self.shadow is False and self.dark_launch:
            raise ValueError("release mode 'dark' judges new versions on their shadow "
                             "predictions; shadow = false contradicts it (set a shadow mode, "
                             "or leave shadow out: 'evaluating' is implied)")
        if self.reward == "accuracy":
            if self.positive is not None:
                raise ValueError("positive applies to a cost-matrix reward only; "
                                 "reward is 'accuracy'")
        else:
            self._binary_classes()
        return self

    def _contextual_params(self) -> None:
        """A contextual policy routes on features this deployment has, with a model small
        enough to snapshot between two requests (``MAX_SERVICE_DIMENSION``)."""
        routed_on = self.policy_params.get("features")
        if isinstance(routed_on, list):
            unknown = [name for name in routed_on if name not in self.features]
            if unknown:
                raise ValueError(f"policy_params.features: {unknown} are not features of "
                                 f"this deployment; it has {list(self.features)}")
        dimension = self.policy_params.get("dimension")
        if isinstance(dimension, int) and dimension > MAX_SERVICE_DIMENSION:
            raise ValueError(
                f"policy_params.dimension: at most {MAX_SERVICE_DIMENSION} in the service, got "
                f"{dimension}: the policy keeps a dimension x dimension matrix per version, "
                "stored with every snapshot, which is taken between two requests (3 versions "
                f"at {MAX_SERVICE_DIMENSION}: 2 MB, about 0.1 s; at 1024: 32 MB, seconds)")

    @property
    def dark_launch(self) -> bool:
        """Whether new versions are released dark (``release = { mode = "dark" }``)."""
        return isinstance(self.release, ReleaseConfig) and self.release.mode == "dark"

    def shadow_params(self) -> ShadowParams | None:
        """``Deployment(shadow=...)``: None means none, unless release mode dark implies it."""
        return self.shadow.params() if isinstance(self.shadow, ShadowConfig) else None

    def release_params(self) -> ReleaseParams | None:
        return self.release.params() if isinstance(self.release, ReleaseConfig) else None

    def _binary_classes(self) -> tuple[Label, Label]:
        """(negative, positive) of a cost-matrix reward; ValueError when they are unclear."""
        labels: list[Label] = [0, 1] if self.labels is None else list(self.labels)
        if len(labels) != 2:
            raise ValueError(f"a cost-matrix reward needs exactly two labels, got {labels!r}")
        positive = 1 if self.positive is None else self.positive
        keys = [_label_key(label) for label in labels]
        if _label_key(positive) not in keys:
            raise ValueError(f"positive {positive!r} is not one of labels {labels!r}"
                             + ("; set positive" if self.positive is None else ""))
        negative = labels[1 - keys.index(_label_key(positive))]
        return negative, positive

    def reward_function(self) -> RewardFunction:
        """``accuracy``, or the cost matrix with this deployment's positive and negative."""
        if self.reward == "accuracy":
            return accuracy
        negative, positive = self._binary_classes()
        return cost_matrix(**self.reward.model_dump(), positive=positive, negative=negative)

    def label_classes(self) -> tuple[Label, ...] | None:
        """The labels feedback may carry: declared, else the cost matrix's, else any (None)."""
        if self.labels is not None:
            return tuple(self.labels)
        if self.reward != "accuracy":
            return self._binary_classes()
        return None


KEY_RULE = f"at least {MIN_KEY_CHARS} printable ASCII characters, no spaces"


def is_valid_api_key(key: str) -> bool:
    """An API key is >= 16 printable ASCII characters without spaces (keys are never echoed)."""
    return len(key) >= MIN_KEY_CHARS and _KEY_CHARS.fullmatch(key) is not None


class ApiKeyConfig(_Strict):
    """One ``[[api_keys]]`` entry."""

    key: str | None = Field(default=None,
                            description=f"The key itself ({KEY_RULE}); prefer `key_env`.")
    key_env: str | None = Field(default=None, min_length=1,
                                description="The environment variable holding the key.")
    scope: Literal["client", "admin"] = Field(
        description="`client`: predict, feedback, read; `admin`: everything, registering and "
        "rolling back included.")

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_api_key(value):
            raise ValueError(f"an API key needs {KEY_RULE}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ApiKeyConfig:
        if (self.key is None) == (self.key_env is None):
            raise ValueError("give exactly one of key or key_env")
        return self

    def resolve(self) -> str:
        if self.key is not None:
            return self.key
        value = os.environ.get(self.key_env or "", "")
        if not is_valid_api_key(value):
            state = "is not set" if self.key_env not in os.environ else "is not a valid key"
            raise ConfigError(f"environment variable {self.key_env} must hold an API key of "
                              f"{KEY_RULE} ({state})")
        return value


def check_database_url(url: str) -> str:
    """``url`` if SQLAlchemy can parse it and it names SQLite or PostgreSQL; else ConfigError.

    Messages never contain the password (``hide_password`` rendering, or no URL at all).
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    scheme = url.split("://", 1)[0] if "://" in url else ""
    hint = "e.g. sqlite:///banditops.db or postgresql+psycopg://user@host/db"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        shown = f" (scheme {scheme!r})" if re.fullmatch(r"[A-Za-z0-9+._-]{1,40}", scheme) else ""
        raise ConfigError(f"database: not a valid database URL{shown}; {hint}") from None
    if "@" in (parsed.host or ""):
        raise ConfigError("database: the URL has more than one '@'; write an '@' in the "
                          "password as %40")
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() in ("postgres", "pgsql"):
        raise ConfigError(f"database: write PostgreSQL URLs as postgresql+psycopg://...; "
                          f"got {shown}")
    if parsed.get_backend_name() not in BACKENDS:
        raise ConfigError(f"database: {shown} is not SQLite or PostgreSQL; {hint}")
    try:
        parsed.get_dialect()
    except (ArgumentError, ImportError):
        raise ConfigError(f"database: no SQLAlchemy driver for {shown}; {hint}") from None
    return url


class ServiceConfig(_Strict):
    """The whole file: service settings at the top level, then keys and deployments."""

    database: str = Field(
        default="sqlite:///banditops.db",
        description="SQLite (`sqlite:///file.db`, relative to the config file's folder) or "
        "PostgreSQL (`postgresql+psycopg://user@host/db`, for several replicas).")
    artifact_dirs: list[Path] = Field(
        default_factory=list,
        description="Folders models may load from (relative to the config file's folder); "
        "nothing outside them ever loads.")
    allow_pickle: bool = Field(
        default=False,
        description="Accept `.joblib`/`.pkl` artifacts, which run code when loaded.")
    trusted_types: list[str] = Field(
        default_factory=list,
        description="Exact extra type names (`module.Name`) a `.skops` file may hold, beyond "
        "the built-in allow-list.")
    max_batch: int = Field(default=256, ge=1, le=100_000,
                           description="Instances (or feedbacks) per request; more: 413.")
    max_body_bytes: int = Field(default=1_000_000, ge=1024,
                                description="Largest request body; more: 413.")
    max_upload_bytes: int = Field(
        default=100_000_000, ge=1024,
        description="Largest model file `POST .../versions/upload` accepts; more: 413.")
    upload_timeout_seconds: float = Field(
        default=600.0, gt=0,
        description="Time to receive a whole upload (each chunk within "
        "`body_timeout_seconds` of the last); else 408.")
    mlflow_tracking_uri: str | None = Field(
        default=None, min_length=1, max_length=4096,
        description="The MLflow tracking store `models:/` and `runs:/` artifacts come from "
        "(needs `pip install 'banditops[mlflow]'`); never taken from a client.")
    model_timeout_ms: float = Field(
        default=200.0, gt=0, description="A model call slower than this is a strike.")
    model_timeout_window: int = Field(
        default=20, ge=1,
        description="Quarantine a version after `model_timeout_strikes` slow calls among its "
        "last `model_timeout_window`.")
    model_timeout_strikes: int = Field(
        default=5, ge=1, description="See `model_timeout_window` (at most that).")
    model_warmup_calls: int = Field(
        default=3, ge=0, description="The first calls after loading never count as strikes.")
    sync_interval_seconds: float = Field(
        default=0.25, ge=0.0,
        description="How often a replica catches up on the others' feedback and version "
        "changes (PostgreSQL).")
    snapshot_every: int = Field(
        default=10_000, ge=1,
        description="Learned rewards between snapshots of the policy state (a restart "
        "learns only what followed).")
    max_queue: int = Field(default=1024, ge=1,
                           description="Jobs waiting per deployment; more get 503 with "
                           "Retry-After.")
    micro_batch: int = Field(default=64, ge=1, le=100_000,
                             description="Concurrent predictions batched into one model call "
                             "per version.")
    shadow_queue: int = Field(
        default=10_000, ge=1,
        description="Answered requests waiting for their shadow predictions, per deployment; "
        "more are dropped (and counted).")
    body_timeout_seconds: float = Field(
        default=4.0, gt=0,
        description="Time to receive the headers, then the body, of a request; else 408.")
    keep_alive_seconds: float = Field(default=5.0, gt=0,
                                      description="Idle connections are closed after this.")
    max_connections: int = Field(default=1000, ge=1,
                                 description="Concurrent connections per process.")
    db_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Database connect and statement timeout.")
    api_keys: list[ApiKeyConfig] = Field(
        default_factory=list,
        description="Who may call the service (`[[api_keys]]`, below); `banditops serve` "
        "needs at least one.")
    deployments: dict[str, DeploymentConfig] = Field(
        min_length=1,
        description="The deployments, by name (`[deployments.<name>]`, below): letters, "
        "digits, `-`, `_`.")
    _folder: Path | None = PrivateAttr(default=None)  # the config file's, set by load_config

    @property
    def folder(self) -> Path:
        """Where relative paths are taken from: the config file's folder (the working
        directory for a config built in code)."""
        return self._folder if self._folder is not None else Path.cwd()

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        try:
            return check_database_url(value)
        except ConfigError as error:
            raise ValueError(str(error).removeprefix("database: ")) from None

    @field_validator("trusted_types")
    @classmethod
    def _exact_types(cls, value: list[str]) -> list[str]:
        for name in value:
            if name.endswith(".") or "*" in name:
                raise ValueError(f"{name!r} looks like a prefix; list exact type names, "
                                 "e.g. 'sklearn.linear_model._logistic.LogisticRegression'")
            if not _TYPE_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a dotted type name (module.Name)")
        return value

    @field_validator("deployments")
    @classmethod
    def _names(cls, value: dict[str, DeploymentConfig]) -> dict[str, DeploymentConfig]:
        for name in value:
            if not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"deployment name {name!r}: use letters, digits, - and _")
        return value

    @model_validator(mode="after")
    def _strikes(self) -> ServiceConfig:
        if self.model_timeout_strikes > self.model_timeout_window:
            raise ValueError(f"model_timeout_strikes ({self.model_timeout_strikes}) must be at "
                             f"most model_timeout_window ({self.model_timeout_window})")
        return self

    def keys(self) -> dict[str, str]:
        """API key -> scope (environment keys are read and checked here)."""
        keys: dict[str, str] = {}
        for index, entry in enumerate(self.api_keys):
            key = entry.resolve()
            if key in keys:
                raise ConfigError(f"api_keys.{index}: the same key is configured twice")
            keys[key] = entry.scope
        return keys


def describe_errors(errors: list[Any], *, skip: int = 0, whole: str = "body") -> str:
    """Pydantic errors as "field.path: message; ..." (``whole`` when the path is empty)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'][skip:]) or whole}: "
                     f"{e['msg'].removeprefix('Value error, ')}" for e in errors)


def load_config(path: str | Path) -> ServiceConfig:
    """Read and check a TOML config; relative paths are taken from the file's folder."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read config {path}: {error}") from None
    try:
        config = ServiceConfig.model_validate(raw)
    except ValidationError as error:
        problems = describe_errors(error.errors(), whole="config")
        raise ConfigError(f"invalid config {path}: {problems}") from None
    config.keys()  # keys from the environment are checked now, not at the first request
    base = path.resolve().parent
    config._folder = base
    config.artifact_dirs = [d if d.is_absolute() else base / d for d in config.artifact_dirs]
    for deployment in config.deployments.values():
        for version in deployment.versions:
            if not version.artifact.startswith(ARTIFACT_URI_PREFIXES) and not Path(
                    version.artifact).is_absolute():
                version.artifact = str(base / version.artifact)
    if config.database.startswith("sqlite:///") and not config.database.startswith(
            "sqlite:////"):
        relative = config.database.removeprefix("sqlite:///")
        if relative and relative != ":memory:":
            config.database = f"sqlite:///{base / relative}"
    return config
