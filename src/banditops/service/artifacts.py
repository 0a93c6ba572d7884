"""Model artifacts: where they may come from, how they load, how a request reaches them.

Formats: ``.skops`` (scikit-learn, loaded without running arbitrary code: only types skops
knows, plus scikit-learn/numpy/scipy types, are trusted), ``.onnx`` (onnxruntime), and
``.joblib``/``.pkl`` only when the config sets ``allow_pickle`` (unpickling runs code).
Artifacts load only from the configured ``artifact_dirs``, after symlinks are resolved.

A loaded model is wrapped in a :class:`ServedModel`, which turns a validated feature mapping
into what the model takes (a one-row frame if it was fitted on named columns, else a
float row in the declared feature order) and turns a slow call into an error, so the
Deployment serves the request elsewhere and quarantines the version.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from banditops.errors import ArtifactError, ModelTimeoutError

FORMATS = {".skops": "skops", ".onnx": "onnx", ".joblib": "pickle", ".pkl": "pickle",
           ".pickle": "pickle"}
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


def check_path(artifact: str | Path, allowed: list[Path]) -> Path:
    """The resolved path, if it lies inside one of the allowed folders."""
    path = Path(artifact).resolve()
    if not any(path.is_relative_to(folder.resolve()) for folder in allowed):
        raise ArtifactError(
            f"artifact {artifact} is outside the configured artifact_dirs "
            f"({', '.join(str(f) for f in allowed) or 'none configured'})")
    if not path.is_file():
        raise ArtifactError(f"artifact {artifact} not found")
    return path


def load_artifact(artifact: str | Path, allowed: list[Path], *, allow_pickle: bool) -> Any:
    path = check_path(artifact, allowed)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ArtifactError(f"artifact {path.name}: unknown format {path.suffix!r}; use .skops "
                            "or .onnx (or .joblib/.pkl with allow_pickle)")
    try:
        if kind == "skops":
            from skops.io import get_untrusted_types, load

            untrusted = get_untrusted_types(file=path)
            refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
            if refused:
                raise ArtifactError(f"artifact {path.name} holds types that are not trusted: "
                                    f"{refused[:5]}")
            return load(path, trusted=untrusted)
        if kind == "onnx":
            return OnnxModel(path)
        if not allow_pickle:
            raise ArtifactError(f"artifact {path.name}: pickle/joblib artifacts can run code "
                                "when loaded; set allow_pickle = true in the config to accept "
                                "them")
        import joblib

        return joblib.load(path)
    except ArtifactError:
        raise
    except Exception as error:  # a corrupt or foreign file: say so, don't crash
        raise ArtifactError(f"artifact {path.name} does not load: {type(error).__name__}: "
                            f"{error}") from None


class OnnxModel:
    """An ONNX classifier taking one float tensor of shape (n, features); first output = label."""

    def __init__(self, path: Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options,
                                                    providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.session.run([self.output], {self.input: np.asarray(rows, np.float32)})[0]


class ServedModel:
    """A model behind the service: feature mapping in, plain JSON-able prediction out."""

    def __init__(self, model: Any, features: list[str], timeout_seconds: float) -> None:
        if not callable(getattr(model, "predict", None)):
            raise ArtifactError(f"the artifact holds a {type(model).__name__}, which has no "
                                "predict()")
        self.model = model
        self.features = features
        self.timeout = timeout_seconds
        names = getattr(model, "feature_names_in_", None)
        self.named = names is not None
        if self.named:
            missing = [str(n) for n in names if n not in features]
            if missing:
                raise ArtifactError(f"the model needs features {missing} that the deployment "
                                    "does not declare")
            self.columns = [str(n) for n in names]

    def _input(self, x: Mapping[str, Any]) -> Any:
        if self.named:
            import pandas as pd

            return pd.DataFrame([[x[c] for c in self.columns]], columns=self.columns)
        return np.array([[x[name] for name in self.features]], dtype=float)

    def predict_one(self, x: Mapping[str, Any]) -> Any:
        started = time.perf_counter()
        prediction = self.model.predict(self._input(x))[0]
        elapsed = time.perf_counter() - started
        if elapsed > self.timeout:
            raise ModelTimeoutError(f"prediction took {elapsed * 1000:.0f} ms, over the "
                                    f"{self.timeout * 1000:.0f} ms timeout")
        return prediction.item() if isinstance(prediction, np.generic) else prediction
