"""A small Python client for the banditops service::

    with Client("http://127.0.0.1:8000", api_key=key) as client:
        decision = client.predict("churn", {"age": 41, "plan": "pro"})
        ...
        client.feedback("churn", decision["decision_id"], label=1)

Errors the service answers with become :class:`ServiceError` (``status``, ``message``).
"""

from __future__ import annotations

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
    def __init__(self, url: str, api_key: str, *, timeout: float = 10.0) -> None:
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
        return self._call("POST", f"/v1/deployments/{deployment}/predict",
                          json={"instances": instances})["decisions"]

    def feedback(self, deployment: str, decision_id: str, label: Any) -> dict[str, Any]:
        """Record ground truth; raises ServiceError 409 if it was already recorded."""
        return self._call("POST", f"/v1/deployments/{deployment}/feedback",
                          json={"decision_id": decision_id, "label": label})

    def feedback_many(self, deployment: str, items: list[tuple[str, Any]]
                      ) -> list[dict[str, Any]]:
        body = [{"decision_id": d, "label": label} for d, label in items]
        return self._call("POST", f"/v1/deployments/{deployment}/feedback",
                          json=body)["results"]

    def deployment(self, deployment: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/deployments/{deployment}")

    def events(self, deployment: str, since: int = 0) -> list[dict[str, Any]]:
        return self._call("GET", f"/v1/deployments/{deployment}/events",
                          params={"since": since})["events"]
