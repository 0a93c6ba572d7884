"""The service's configuration: a TOML file of named deployments, keys and limits.

```toml
database = "sqlite:///banditops.db"        # or postgresql+psycopg://user@host/db
artifact_dirs = ["models"]                 # versions load only from these folders
allow_pickle = false                       # joblib/pickle artifacts run code: opt in
max_batch = 256                            # instances (or feedbacks) per request
max_body_bytes = 1_000_000
max_queue = 1000                           # jobs waiting per deployment; more get 503
micro_batch = 64                           # concurrent predictions batched per model call
body_timeout_seconds = 5                   # headers, then body, each in time (else 408)
keep_alive_seconds = 5                     # idle connections are closed
max_connections = 1000                     # more connections get 503
db_timeout_seconds = 5                     # database connect/statement timeout
model_timeout_ms = 200                     # slower models are quarantined
snapshot_every = 10000                     # rewards between policy snapshots

[[api_keys]]
key_env = "BANDITOPS_ADMIN_KEY"            # or key = "..." (not recommended)
scope = "admin"                            # admin: everything; client: predict, feedback, read

[deployments.churn]
policy = "thompson"                        # any name from banditops.policies.policy_names()
policy_params = { prior_weight = 20 }
reward = "accuracy"                        # or { tp = 1, fp = 0.95, fn = 0, tn = 1 }
guardrail = { min_samples = 50, margin = 0.05 }   # or false
feedback_ttl_seconds = 604800              # later feedback gets 410
features = { age = "number", plan = "string" }

[[deployments.churn.versions]]
name = "v1"
artifact = "models/churn-v1.skops"
validation_score = 0.86
```

Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from banditops.errors import BanditOpsError
from banditops.policies import policy_names


class ConfigError(BanditOpsError):
    """The configuration file is missing, unreadable or inconsistent."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    confidence: float = Field(default=0.99, gt=0.5, lt=1.0)
    min_samples: int = Field(default=50, ge=2)
    margin: float = Field(default=0.05, ge=0.0, lt=1.0)
    window: int = Field(default=1000, ge=10)
    check_every: int = Field(default=5, ge=1)


class DeploymentConfig(_Strict):
    policy: str = "thompson"
    policy_params: dict[str, Any] = Field(default_factory=dict)
    reward: Literal["accuracy"] | CostMatrixConfig = "accuracy"
    guardrail: GuardrailConfig | Literal[False] = Field(default_factory=GuardrailConfig)
    feedback_ttl_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    features: dict[str, Literal["number", "string"]] = Field(min_length=1)
    versions: list[VersionConfig] = Field(default_factory=list)

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        if value not in policy_names():
            raise ValueError(f"unknown policy {value!r}; known: {', '.join(policy_names())}")
        return value

    @model_validator(mode="after")
    def _unique_versions(self) -> DeploymentConfig:
        names = [v.name for v in self.versions]
        if len(names) != len(set(names)):
            raise ValueError(f"version names repeat: {names}")
        return self


class ApiKeyConfig(_Strict):
    key: str | None = Field(default=None, min_length=16)
    key_env: str | None = None
    scope: Literal["client", "admin"]

    @model_validator(mode="after")
    def _one_source(self) -> ApiKeyConfig:
        if (self.key is None) == (self.key_env is None):
            raise ValueError("give exactly one of key or key_env")
        return self

    def resolve(self) -> str:
        if self.key is not None:
            return self.key
        value = os.environ.get(self.key_env or "", "")
        if len(value) < 16:
            raise ConfigError(f"environment variable {self.key_env} must hold an API key of at "
                              "least 16 characters")
        return value


class ServiceConfig(_Strict):
    database: str = "sqlite:///banditops.db"
    artifact_dirs: list[Path] = Field(default_factory=list)
    allow_pickle: bool = False
    max_batch: int = Field(default=256, ge=1, le=100_000)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    model_timeout_ms: float = Field(default=200.0, gt=0)
    sync_interval_seconds: float = Field(default=0.25, ge=0.0)
    snapshot_every: int = Field(default=10_000, ge=1)  # learned rewards between snapshots
    max_queue: int = Field(default=1000, ge=1)  # jobs waiting per deployment; more get 503
    micro_batch: int = Field(default=64, ge=1, le=100_000)  # instances per model call
    body_timeout_seconds: float = Field(default=5.0, gt=0)  # to receive headers, then body
    keep_alive_seconds: float = Field(default=5.0, gt=0)  # idle connections are closed
    max_connections: int = Field(default=1000, ge=1)  # concurrent connections (uvicorn)
    db_timeout_seconds: float = Field(default=5.0, gt=0)  # connect and statement timeout
    api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    deployments: dict[str, DeploymentConfig] = Field(min_length=1)

    @field_validator("deployments")
    @classmethod
    def _names(cls, value: dict[str, DeploymentConfig]) -> dict[str, DeploymentConfig]:
        for name in value:
            if not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"deployment name {name!r}: use letters, digits, - and _")
        return value

    def keys(self) -> dict[str, str]:
        """API key -> scope."""
        return {entry.resolve(): entry.scope for entry in self.api_keys}


def describe_errors(errors: list[Any], *, skip: int = 0, whole: str = "body") -> str:
    """Pydantic errors as "field.path: message; ..." (``whole`` when the path is empty)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'][skip:]) or whole}: {e['msg']}"
                     for e in errors)


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
