"""The embedded demo: what ``banditops serve`` runs without a config file.

Two versions (logistic regression and gradient boosting) are trained on the first 10,000
census rows, saved as skops artifacts beside the database, and served behind Thompson
sampling with the guardrail. API keys come from ``BANDITOPS_CLIENT_KEY`` (or
``BANDITOPS_API_KEY``; client) and ``BANDITOPS_ADMIN_KEY`` (admin), as in
``examples/config.toml``, or are generated and printed (a key from the environment is named,
never printed).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from banditops.service.config import ConfigError, ServiceConfig

TRAIN_ROWS = 10_000


KEY_VARIABLES = {"client": ("BANDITOPS_CLIENT_KEY", "BANDITOPS_API_KEY"),
                 "admin": ("BANDITOPS_ADMIN_KEY",)}


def demo_keys() -> tuple[dict[str, str], dict[str, str]]:
    """Each scope's key, and what to show for it: a generated key itself, a key from the
    environment only by its variable's name (it is already known, and logs are read)."""
    keys, shown = {}, {}
    for scope, variables in KEY_VARIABLES.items():
        variable = next((v for v in variables if os.environ.get(v)), None)
        if variable is None:
            keys[scope] = shown[scope] = secrets.token_urlsafe(24)
            continue
        keys[scope], shown[scope] = os.environ[variable], f"(from ${variable})"
        if len(keys[scope]) < 16:  # checked before the minutes of training
            raise ConfigError(f"environment variable {variable} must hold an API key of at "
                              "least 16 characters")
    return keys, shown


def demo_config(data_dir: Path | None, database: str, folder: Path) -> tuple[ServiceConfig,
                                                                              dict[str, str]]:
    """Config and what to show the user of its keys (scope -> key or where it came from)."""
    keys, shown = demo_keys()
    import pandas as pd
    from skops.io import dump

    from banditops.simulation.datasets import load_adult
    from banditops.simulation.models import fit, make_model

    data = load_adult(data_dir)  # a clear DataNotFoundError when missing
    features = data.features.iloc[:TRAIN_ROWS]
    labels = data.labels.to_numpy()[:TRAIN_ROWS]
    folder.mkdir(parents=True, exist_ok=True)
    versions = []
    for index, family in enumerate(("logistic-regression", "gradient-boosting"), 1):
        path = folder / f"adult-v{index}-{family}.skops"
        if not path.exists():
            model = fit(make_model(family, features.iloc[:8000]), features.iloc[:8000],
                        labels[:8000])
            dump(model, path)
            score = float((model.predict(features.iloc[8000:]) == labels[8000:]).mean())
            path.with_suffix(".score").write_text(f"{score:.4f}")
        score = float(path.with_suffix(".score").read_text())
        versions.append({"name": f"v{index}", "artifact": str(path), "validation_score": score})
    kinds = {c: "number" if pd.api.types.is_numeric_dtype(features[c]) else "string"
             for c in features.columns}
    config = ServiceConfig.model_validate({
        "database": database, "artifact_dirs": [str(folder)],
        "api_keys": [{"key": keys["client"], "scope": "client"},
                     {"key": keys["admin"], "scope": "admin"}],
        "deployments": {"adult": {"policy": "thompson", "policy_params": {"prior_weight": 20},
                                  # the service's guardrail defaults before they became
                                  # the library's (200 / 10)
                                  "guardrail": {"min_samples": 50, "check_every": 5},
                                  # the census labels as the models predict them:
                                  # 1 for >50K, 0 for <=50K; anything else is a 422
                                  "labels": [0, 1],
                                  "features": kinds, "versions": versions}},
    })
    return config, shown
