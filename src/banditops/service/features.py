"""A deployment's feature schema: each feature is a number or a string, and may be nullable.

Declared in the config as ``features = { age = "number", plan = "string?" }``. A trailing
``?`` makes the feature nullable: a request may send ``null`` for it (it must still send
the key). A feature without ``?`` refuses ``null`` (422 naming the feature), as before.

What a model receives for a ``null`` (see :class:`~banditops.service.artifacts.ServedModel`):

- a number: NaN, in every format (what scikit-learn's imputers and NaN-aware trees expect);
- a string, scikit-learn models (skops, joblib): NaN, which is how pandas stores a missing
  string and what ``SimpleImputer``'s default ``missing_values`` matches; where an imputer
  over that column declares a string ``missing_values`` (``""``, as ONNX exports need), that
  string instead;
- a string, ONNX models: ``""`` (an ONNX string tensor holds no null; skl2onnx exports a
  string imputer only with a string ``missing_values``, so train it with
  ``SimpleImputer(missing_values="")``).

Every version must answer a ``null`` in each nullable feature: the smoke test at
registration and the check at load send one, so a version that cannot (a bare
``LogisticRegression`` raises on NaN) is refused then, never failing a user's request later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Kind = Literal["number", "string", "number?", "string?"]
KINDS: tuple[str, ...] = ("number", "string", "number?", "string?")


def base(kind: str) -> str:
    """``"number"`` or ``"string"``, without the nullable mark."""
    return kind.removesuffix("?")


def nullable(kind: str) -> bool:
    return kind.endswith("?")


def base_kinds(features: Mapping[str, str]) -> dict[str, str]:
    """Feature name -> ``"number"`` or ``"string"``."""
    return {name: base(kind) for name, kind in features.items()}


def nullable_features(features: Mapping[str, str]) -> list[str]:
    """The features that may be ``null``, in declaration order."""
    return [name for name, kind in features.items() if nullable(kind)]
