"""A small Python client for the banditops service::

    with Client("http://127.0.0.1:8000", api_key=key) as client:
        decision = client.predict("churn", {"age": 41, "plan": "pro"})
        ...
        client.feedback("churn", decision["decision_id"], label=1)

Errors the service answers with become :class:`ServiceError` (``status``, ``message``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from banditops.errors import BanditOpsError


class ServiceError(BanditOpsError):
    """The service answered with an error; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Client:
    def __init__(self, url: str, api_key: str, *, timeout: float = 10.0,
                 max_batch: int = 256) -> None:
        """``max_batch``: the server's ``max_batch``; longer lists are sent in several
        requests."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.max_batch = max_batch
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout,
                                  headers={"Authorization": f"Bearer {api_key}"})

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ServiceError(0, f"cannot reach the service: {error}") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("detail", response.text)
            except ValueError:
                message = response.text
            raise ServiceError(response.status_code, str(message))
        return response.json()

    def predict(self, deployment: str, features: dict[str, Any]) -> dict[str, Any]:
        """One decision: decision_id, version, prediction, propensity."""
        return self._call("POST", f"/v1/deployments/{deployment}/predict",
                          json={"features": features})

    def predict_many(self, deployment: str, instances: list[dict[str, Any]]
                     ) -> list[dict[str, Any]]:
        """One decision per instance, in order (several requests past ``max_batch``)."""
        decisions: list[dict[str, Any]] = []
        for batch in self._batches(instances):
            decisions += self._call("POST", f"/v1/deployments/{deployment}/predict",
                                    json={"instances": batch})["decisions"]
        return decisions

    def feedback(self, deployment: str, decision_id: str, label: Any) -> dict[str, Any]:
        """Record ground truth; raises ServiceError 409 if it was already recorded."""
        return self._call("POST", f"/v1/deployments/{deployment}/feedback",
                          json={"decision_id": decision_id, "label": label})

    def feedback_many(self, deployment: str, items: list[tuple[str, Any]]
                      ) -> list[dict[str, Any]]:
        """One result per item, each with its own status (several requests past
        ``max_batch``). ``items``: ``(decision_id, label)`` pairs."""
        for item in items:  # a dict would unpack into its two keys and be sent as an id
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise TypeError("feedback_many takes (decision_id, label) pairs, got "
                                f"{item!r}: e.g. [(d['decision_id'], label), ...]")
        results: list[dict[str, Any]] = []
        for batch in self._batches(items):
            body = [{"decision_id": d, "label": label} for d, label in batch]
            results += self._call("POST", f"/v1/deployments/{deployment}/feedback",
                                  json=body)["results"]
        return results

    def _batches(self, items: list[Any]) -> list[list[Any]]:
        return [items[i:i + self.max_batch] for i in range(0, len(items), self.max_batch)]

    def deployment(self, deployment: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/deployments/{deployment}")

    def events(self, deployment: str, since: int = 0, limit: int = 100
               ) -> list[dict[str, Any]]:
        return self._call("GET", f"/v1/deployments/{deployment}/events",
                          params={"since": since, "limit": limit})["events"]

    # ------------------------------------------------------- admin (admin key)
    def register(self, deployment: str, version: str, artifact: str,
                 validation_score: float | None = None, *, timeout: float = 120.0
                 ) -> dict[str, Any]:
        """A new version from an artifact in the server's artifact folders (or an MLflow
        URI): live, or dark on a deployment that releases dark (the answer's ``status`` says
        which). ``timeout``: the server loads and checks the model in a child process, which
        takes seconds (more on a busy machine, or for a model fetched from MLflow)."""
        body: dict[str, Any] = {"name": version, "artifact": artifact}
        if validation_score is not None:
            body["validation_score"] = validation_score
        return self._call("POST", f"/v1/deployments/{deployment}/versions", json=body,
                          timeout=timeout)

    def upload(self, deployment: str, version: str, path: str | Path,
               validation_score: float | None = None, *, timeout: float = 600.0
               ) -> dict[str, Any]:
        """A new version from a local artifact file (.skops or .onnx; .joblib/.pkl if the
        server allows pickle), streamed to the server; the answer has its ``sha256``."""
        path = Path(path)
        data: dict[str, str] = {"version": version}
        if validation_score is not None:
            data["validation_score"] = repr(float(validation_score))
        with path.open("rb") as artifact:
            return self._call("POST", f"/v1/deployments/{deployment}/versions/upload",
                              data=data, files={"artifact": (path.name, artifact)},
                              timeout=timeout)

    def rollback(self, deployment: str, version: str, reason: str = "manual rollback"
                 ) -> dict[str, Any]:
        return self._call("POST", f"/v1/deployments/{deployment}/versions/{version}/rollback",
                          json={"reason": reason})

    def reinstate(self, deployment: str, version: str,
                  reason: str = "reinstated through the API") -> dict[str, Any]:
        """Put a rolled-back or quarantined version live again."""
        return self._call("POST",
                          f"/v1/deployments/{deployment}/versions/{version}/reinstate",
                          json={"reason": reason})

    def promote(self, deployment: str, version: str,
                reason: str = "promoted through the API") -> dict[str, Any]:
        """Put a dark version (released dark, still under evaluation) live."""
        return self._call("POST",
                          f"/v1/deployments/{deployment}/versions/{version}/promote",
                          json={"reason": reason})

    def retire(self, deployment: str, version: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/deployments/{deployment}/versions/{version}")
