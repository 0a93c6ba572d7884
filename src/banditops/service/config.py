"""The service's configuration: a TOML file of named deployments, keys and limits.

```toml
database = "sqlite:///banditops.db"        # or postgresql+psycopg://user@host/db
artifact_dirs = ["models"]                 # versions load only from these folders
allow_pickle = false                       # joblib/pickle artifacts run code: opt in
trusted_types = []                         # exact extra type names skops may load
max_batch = 256                            # instances (or feedbacks) per request
max_body_bytes = 1_000_000
body_timeout_seconds = 4.0                 # headers, then body, each in time (else 408)
keep_alive_seconds = 5.0                   # idle connections are closed after this
max_connections = 1000                     # concurrent connections per worker
max_queue = 1024                           # jobs waiting per deployment before 503
micro_batch = 64                           # concurrent predictions batched per version
shadow_queue = 10000                       # answered requests waiting for their shadow
                                           #   predictions, per deployment; more are dropped
db_timeout_seconds = 5.0                   # connect and statement timeout
model_timeout_ms = 200                     # a model call slower than this is a strike
model_timeout_window = 20                  # quarantine after model_timeout_strikes slow
model_timeout_strikes = 5                  #   calls among the last model_timeout_window
model_warmup_calls = 3                     # first calls after loading never count
snapshot_every = 10000                     # rewards between policy snapshots

[[api_keys]]
key_env = "BANDITOPS_ADMIN_KEY"            # or key = "..." (not recommended); >= 16
scope = "admin"                            # printable ASCII characters; admin: everything,
                                           # client: predict, feedback, read

[deployments.churn]
policy = "thompson"                        # any name from banditops.policies.policy_names()
policy_params = { prior_weight = 20 }      # checked against the policy's Params at load
reward = "accuracy"                        # or { tp = 1, fp = 0.95, fn = 0, tn = 1 }
labels = ["no", "yes"]                     # optional: the only labels feedback may carry
# positive = "yes"                         # with a cost-matrix reward only (default: 1)
guardrail = { min_samples = 200, margin = 0.05, method = "sequential" }   # or false
shadow = { mode = "all" }                  # or "rate" (with rate = 0.1), "evaluating"; or false
release = { mode = "dark", margin = 0.01 } # new versions serve nobody until judged; or false
feedback_ttl_seconds = 604800              # later feedback gets 410
feedback_same_key = false                  # true: only the key that predicted may label
features = { age = "number", plan = "string?" }   # "?": may be null (see README)

[[deployments.churn.versions]]
name = "v1"
artifact = "models/churn-v1.skops"
validation_score = 0.86
```

Relative paths are resolved against the config file's folder. Policy, guardrail, shadow and
release parameters are validated by the library's own parameter objects
(``EpsilonGreedyParams``, ``GuardrailParams``, ``ShadowParams``, ``ReleaseParams``, ...), so
their defaults and rules live in one place. Every mistake is a :class:`ConfigError` with one
line naming the field; a database password is never echoed.

**Shadow scoring** (``shadow``, see :mod:`banditops.shadow`): besides the version that served
a request, other versions predict it too — after the answer was sent, in a bounded queue per
deployment (``shadow_queue``; when it is full the work is dropped and counted in
``banditops_shadow_dropped_total``) — and each of those predictions is scored when the label
arrives: side observations for the policy, evidence for the guardrail. Modes: ``"all"`` (every
other live version), ``"rate"`` (a request is shadowed with probability ``rate``),
``"evaluating"`` (only versions with fewer than ``evaluation_rewards`` rewards). It is
**invalid when the outcome depends on the served prediction** — the claim flagged is the one
investigated, the item recommended is the one clicked: there a label says nothing about what
another version's answer would have earned; leave ``shadow`` out (bandit feedback only).

**Dark launch** (``release = { mode = "dark", margin, min_samples, check_every, carry }``,
see :mod:`banditops.release`): a version registered while others are live (through the admin
API, or added to this file later) starts ``dark``: it serves nobody, is shadow-scored on every
shadowed request (``shadow`` defaults to ``{ mode = "evaluating" }``), and is promoted (event
``promoted``) once its paired rewards show it is not worse than the best live version by
``margin``, or rolled back (``rolled_back``) once they show it is; ``POST
.../versions/{v}/promote`` promotes by hand. The versions of the first start go live.
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
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from banditops.errors import BanditOpsError, InvalidParameterError
from banditops.guardrails import GuardrailParams
from banditops.policies import parse_policy_params, policy_names
from banditops.policies.base import check_seed
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


class ConfigError(BanditOpsError):
    """The configuration file is missing, unreadable or inconsistent."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class VersionConfig(_Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    artifact: Path
    validation_score: float | None = Field(default=None, ge=0.0, le=1.0)


class CostMatrixConfig(_Strict):
    tp: float = Field(ge=0, le=1)
    fp: float = Field(ge=0, le=1)
    fn: float = Field(ge=0, le=1)
    tn: float = Field(ge=0, le=1)


class GuardrailConfig(_Strict):
    """A deployment's guardrail section: the fields, defaults and rules of GuardrailParams."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    confidence: float = _GUARDRAIL.confidence
    min_samples: int = _GUARDRAIL.min_samples
    margin: float = _GUARDRAIL.margin
    method: str = _GUARDRAIL.method
    window: int = _GUARDRAIL.window  # type: ignore[assignment]  (a config always has one)
    check_every: int = _GUARDRAIL.check_every

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

    mode: str = _SHADOW.mode
    rate: float = _SHADOW.rate
    evaluation_rewards: int = _SHADOW.evaluation_rewards
    seed: int | None = _SHADOW.seed

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

    mode: str = _RELEASE.mode
    margin: float = _RELEASE.margin
    min_samples: int = _RELEASE.min_samples
    check_every: int = _RELEASE.check_every
    carry: int = _RELEASE.carry

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
    policy: str = "thompson"
    policy_params: dict[str, Any] = Field(default_factory=dict)
    reward: Literal["accuracy"] | CostMatrixConfig = "accuracy"
    labels: list[str | int | bool] | None = Field(default=None, min_length=2, max_length=1000)
    positive: str | int | bool | None = None
    guardrail: GuardrailConfig | Literal[False] = Field(default_factory=GuardrailConfig)
    shadow: ShadowConfig | Literal[False] | None = None  # None: only what release implies
    release: ReleaseConfig | Literal[False] | None = None
    feedback_ttl_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    feedback_same_key: bool = False
    features: dict[str, FeatureKind] = Field(min_length=1)
    versions: list[VersionConfig] = Field(default_factory=list)

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
    key: str | None = None
    key_env: str | None = Field(default=None, min_length=1)
    scope: Literal["client", "admin"]

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
    database: str = "sqlite:///banditops.db"
    artifact_dirs: list[Path] = Field(default_factory=list)
    allow_pickle: bool = False
    trusted_types: list[str] = Field(default_factory=list)
    max_batch: int = Field(default=256, ge=1, le=100_000)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    model_timeout_ms: float = Field(default=200.0, gt=0)
    model_timeout_window: int = Field(default=20, ge=1)
    model_timeout_strikes: int = Field(default=5, ge=1)
    model_warmup_calls: int = Field(default=3, ge=0)
    sync_interval_seconds: float = Field(default=0.25, ge=0.0)
    snapshot_every: int = Field(default=10_000, ge=1)  # learned rewards between snapshots
    max_queue: int = Field(default=1024, ge=1)  # jobs waiting per deployment; more get 503
    micro_batch: int = Field(default=64, ge=1, le=100_000)  # instances per model call
    shadow_queue: int = Field(default=10_000, ge=1)  # shadow work waiting; more is dropped
    body_timeout_seconds: float = Field(default=4.0, gt=0)  # to receive headers, then body
    keep_alive_seconds: float = Field(default=5.0, gt=0)  # idle connections are closed
    max_connections: int = Field(default=1000, ge=1)  # concurrent connections (uvicorn)
    db_timeout_seconds: float = Field(default=5.0, gt=0)  # connect and statement timeout
    api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    deployments: dict[str, DeploymentConfig] = Field(min_length=1)

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
    config.artifact_dirs = [d if d.is_absolute() else base / d for d in config.artifact_dirs]
    for deployment in config.deployments.values():
        for version in deployment.versions:
            if not version.artifact.is_absolute():
                version.artifact = base / version.artifact
    if config.database.startswith("sqlite:///") and not config.database.startswith(
            "sqlite:////"):
        relative = config.database.removeprefix("sqlite:///")
        if relative and relative != ":memory:":
            config.database = f"sqlite:///{base / relative}"
    return config
