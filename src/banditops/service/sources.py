"""Where a version's bytes come from: a file under ``artifact_dirs``, an upload, or MLflow.

An ``artifact`` is one of:

- a path (the original way): the file must lie under ``artifact_dirs`` on every replica;
- ``upload:<sha256><suffix>``: bytes sent to ``POST .../versions/upload``;
- ``models:/<name>/<version>``, ``models:/<name>@<alias>`` or ``runs:/<run id>/<path>``: a
  model in the MLflow tracking store named by the server's ``mlflow_tracking_uri`` (never
  by a client: a request cannot make the server fetch from an address of its choosing).

**Uploaded and MLflow bytes live in the database** (tables ``artifacts`` and
``artifact_chunks``, content-addressed by sha256, 1 MiB per row), with a private local cache
in front. Replicas share a database, not a disk: a version uploaded to one replica must load
on the others, and after a restart, with no shared volume, object store or extra service to
run. The database is already the one thing every replica reaches and backs up, and it holds
the version's sha256, so the bytes and their pin cannot drift apart. Models of up to a few
hundred MB fit PostgreSQL and SQLite well in chunks (no statement carries a whole model);
a team with bigger models keeps them in MLflow or on a shared disk. An MLflow model is copied
in too: a replica or a restart loads the same bytes (the pinned sha256) without asking MLflow
again, even if an alias has moved or the tracking server is down.

MLflow is an optional extra (``pip install 'banditops[mlflow]'``). Of a model's flavours only
those banditops loads safely are used: ``onnx``, then ``sklearn`` saved with skops, then the
pickle-based ``sklearn`` formats only with ``allow_pickle``. MLflow's own loaders (pyfunc)
never run: they import code named by the model.

The cache is a folder made for this process (mode 0700) and removed at shutdown and at exit;
files in it are named by their sha256 and every load checks the digest again.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from banditops.errors import ArtifactError
from banditops.service.artifacts import FORMATS
from banditops.service.config import ARTIFACT_URI_PREFIXES, ServiceConfig
from banditops.store.sql import Store

UPLOAD = re.compile(r"upload:(?P<sha>[0-9a-f]{64})(?P<suffix>\.[a-z]{1,8})")
MODELS = re.compile(r"models:/(?P<name>[^/@\s]{1,256})"
                    r"(?:/(?P<version>[0-9]{1,10})|@(?P<alias>[A-Za-z0-9_-]{1,255}))")
RUNS = re.compile(r"runs:/(?P<run>[0-9a-f]{32})/(?P<path>[A-Za-z0-9._-]{1,255}"
                  r"(?:/[A-Za-z0-9._-]{1,255}){0,20})")
MLFLOW_EXTRA = "pip install 'banditops[mlflow]'"


def is_uri(artifact: str) -> bool:
    """Whether ``artifact`` names an upload or an MLflow model rather than a file."""
    return artifact.startswith(ARTIFACT_URI_PREFIXES)


def is_mlflow(artifact: str) -> bool:
    return artifact.startswith(("models:", "runs:"))


@dataclass(frozen=True)
class Fetched:
    """A local file to check and load, and what the version records about it."""

    path: Path
    allowed: list[Path]  # the folders load_artifact may read it from
    origin: dict[str, Any] = field(default_factory=dict)  # for the "registered" event
    keep: bool = False  # store the bytes in the database when the version is registered


class Sources:
    """Turns an artifact reference into a local file (see the module docstring)."""

    def __init__(self, config: ServiceConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self._cache: Path | None = None
        self._lock = threading.Lock()

    @property
    def cache(self) -> Path:
        with self._lock:
            if self._cache is None:
                self._cache = Path(tempfile.mkdtemp(prefix="banditops-artifacts-"))
                atexit.register(shutil.rmtree, self._cache, True)
            return self._cache

    def close(self) -> None:
        """Remove the cache (the server's shutdown). ``atexit`` alone is not enough: after a
        graceful stop on SIGTERM, uvicorn raises the signal again and the process dies of it,
        without running ``atexit`` handlers, so every restart left a copy of every uploaded
        and MLflow model in the temporary folder."""
        with self._lock:
            if self._cache is not None:
                shutil.rmtree(self._cache, ignore_errors=True)

    def temporary(self, suffix: str = "") -> Path:
        """A new empty file in the cache (for an upload being received)."""
        handle, name = tempfile.mkstemp(dir=self.cache, prefix="incoming-", suffix=suffix)
        os.close(handle)
        return Path(name)

    def cached(self, source: Path, sha256: str, suffix: str) -> Path:
        """Move a received file to its content address in the cache."""
        target = self.cache / f"{sha256}{suffix}"
        os.replace(source, target)
        return target

    def fetch(self, artifact: str, expected_sha256: str | None = None) -> Fetched:
        """A local file for ``artifact``; may download (call it off the event loop)."""
        upload = UPLOAD.fullmatch(artifact)
        if upload is not None:
            path = self._from_database(upload["sha"])
            if path is None or path.suffix != upload["suffix"]:
                raise ArtifactError(f"artifact {artifact}: no uploaded artifact with this "
                                    "sha256 in the database")
            return Fetched(path, [self.cache], {"source": "upload"})
        if artifact.startswith("upload:"):
            raise ArtifactError(f"artifact {artifact[:100]!r}: expected upload:<sha256 in "
                                "hex><suffix>, as an upload answered")
        if is_mlflow(artifact):
            if expected_sha256 is not None:  # a known version: the database has its bytes
                path = self._from_database(expected_sha256)
                if path is not None:
                    return Fetched(path, [self.cache], {"source": artifact})
            return self._from_mlflow(artifact)
        return Fetched(Path(artifact), list(self.config.artifact_dirs))

    def _from_database(self, sha256: str) -> Path | None:
        """The cached copy of stored bytes (written from the database if needed)."""
        for path in self.cache.glob(f"{sha256}.*"):
            return path
        incoming = self.temporary()
        try:
            suffix = self.store.read_artifact(sha256, incoming)
            return None if suffix is None else self.cached(incoming, sha256, suffix)
        finally:
            incoming.unlink(missing_ok=True)

    def _from_mlflow(self, uri: str) -> Fetched:
        if self.config.mlflow_tracking_uri is None:
            raise ArtifactError(f"artifact {uri[:300]}: MLflow URIs need mlflow_tracking_uri "
                                "in the server config")
        folder = Path(tempfile.mkdtemp(dir=self.cache, prefix="mlflow-"))
        try:
            model, origin = download_mlflow(uri, self.config.mlflow_tracking_uri, folder)
            chosen, suffix, flavour = pick_flavour(model, allow_pickle=self.config.allow_pickle,
                                                   uri=uri)
            digest = _sha256(chosen)
            path = self.cached(chosen, digest, suffix)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return Fetched(path, [self.cache], {"source": uri, "mlflow_flavour": flavour,
                                            **origin}, keep=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------- MLflow
_MLFLOW_LOCK = threading.Lock()


def _mlflow() -> Any:
    """The mlflow package, or a clear error naming the extra."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # not minutes of retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    # MLflow reports usage to its makers' servers by default: a model server calls no one
    # but the tracking store it is given (an operator may set the variable to false)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        import mlflow
        import mlflow.artifacts
    except ImportError:
        raise ArtifactError("MLflow model URIs need the optional extra 'mlflow': "
                            f"{MLFLOW_EXTRA}") from None
    return mlflow


def download_mlflow(uri: str, tracking_uri: str, folder: Path) -> tuple[Path, dict[str, Any]]:
    """Download the model an MLflow URI names into ``folder``; (its local path, where it
    came from: registered name, version, run id). An alias is resolved once, and the
    version it pointed to is what is downloaded."""
    models, runs = MODELS.fullmatch(uri), RUNS.fullmatch(uri)
    if models is None and (runs is None or ".." in runs["path"].split("/")):
        raise ArtifactError(f"artifact {uri[:300]!r}: expected models:/<name>/<version>, "
                            "models:/<name>@<alias> or runs:/<run id>/<path>")
    mlflow = _mlflow()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        with _MLFLOW_LOCK:  # the registry URI is process-wide in mlflow; it is always ours
            mlflow.set_tracking_uri(tracking_uri)
            mlflow.set_registry_uri(tracking_uri)
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        if models is not None:
            name = models["name"]
            found = (client.get_model_version(name, models["version"])
                     if models["version"] is not None
                     else client.get_model_version_by_alias(name, models["alias"]))
            origin = {"mlflow_model": name, "mlflow_version": str(found.version),
                      "mlflow_run_id": found.run_id}
            target = f"models:/{name}/{found.version}"
        else:
            client.get_run(runs["run"])  # an unknown run is named as such
            origin = {"mlflow_run_id": runs["run"], "mlflow_path": runs["path"]}
            target = uri
        local = mlflow.artifacts.download_artifacts(artifact_uri=target, dst_path=str(folder),
                                                    tracking_uri=tracking_uri)
    except MlflowException as error:
        message = str(getattr(error, "message", error)).splitlines()[0][:300]
        raise ArtifactError(f"artifact {uri[:300]}: MLflow: {message}") from None
    except OSError as error:
        raise ArtifactError(f"artifact {uri[:300]}: downloading from MLflow failed: "
                            f"{error}") from None
    return Path(local), origin


def pick_flavour(model: Path, *, allow_pickle: bool, uri: str) -> tuple[Path, str, str]:
    """(the file to load, its suffix, the flavour) from a downloaded MLflow model folder,
    read from its MLmodel file; a single downloaded file is taken by its suffix."""
    if model.is_file():
        suffix = model.suffix.lower()
        if suffix not in FORMATS:
            raise ArtifactError(f"artifact {uri}: {model.name} is not a model banditops "
                                "loads (.skops, .onnx, or .joblib/.pkl with allow_pickle)")
        return model, ".pkl" if FORMATS[suffix] == "pickle" else suffix, "file"
    import yaml

    try:
        meta = yaml.safe_load((model / "MLmodel").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ArtifactError(f"artifact {uri}: no readable MLmodel file ({error})") from None
    flavours = meta.get("flavors") if isinstance(meta, dict) else None
    if not isinstance(flavours, dict):
        raise ArtifactError(f"artifact {uri}: the MLmodel file lists no flavours")
    onnx, sklearn = flavours.get("onnx"), flavours.get("sklearn")
    if isinstance(onnx, dict):
        return _inside(model, onnx.get("data", "model.onnx"), uri), ".onnx", "onnx"
    if isinstance(sklearn, dict):
        form = sklearn.get("serialization_format", "pickle")
        path = _inside(model, sklearn.get("pickled_model", ""), uri)
        if form == "skops":
            return path, ".skops", "sklearn (skops)"
        if not allow_pickle:
            raise ArtifactError(f"artifact {uri}: the sklearn flavour is saved as {form}, "
                                "which runs code when loaded; set allow_pickle = true in the "
                                "config to accept it, or log the model with "
                                "serialization_format='skops' or as ONNX")
        return path, ".pkl", f"sklearn ({form})"
    raise ArtifactError(f"artifact {uri}: flavours {sorted(flavours)[:10]}; banditops loads "
                        "only onnx and sklearn (skops, or pickle with allow_pickle), never "
                        "MLflow's pyfunc loader (it imports code)")


def _inside(folder: Path, name: Any, uri: str) -> Path:
    """``folder/name`` if it is a file inside ``folder`` (the MLmodel file is untrusted)."""
    if not isinstance(name, str) or not name:
        raise ArtifactError(f"artifact {uri}: the MLmodel file names no model file")
    path = (folder / name).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise ArtifactError(f"artifact {uri}: model file {name[:100]!r} not found in the "
                            "downloaded model")
    return path
