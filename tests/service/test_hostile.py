"""A hostile client against a real server process (issue 8, "What it must show").

Over a hundred distinct bad or abusive requests across every route: each gets a 4xx (the
exact one where the contract fixes it) and a JSON ``{"detail": ...}`` naming what was wrong;
none gets a 5xx or a traceback. Then the named attacks: a skops file that would run code, guessing
decision ids, 300 slow unauthenticated clients, /healthz during a 5 s model call and during a
database stall (through tests/service/tcp_proxy.py), and a second process on one SQLite file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import re
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from skops.io import dump

from tests.service.conftest import ADMIN_KEY, CLIENT_KEY, REPO, Server, free_port, write_config
from tests.service.models import SLEEP_SIGNAL, SleepsOnSignal, as_features, make_rows
from tests.service.tcp_proxy import TcpProxy

X, Y = make_rows(400, seed=21)
ONE = as_features(X[0])
P = "/v1/deployments"
TRACEBACK = re.compile(r'Traceback|File "')
NOPE = "nope"

DEPLOYMENTS = """
[deployments.main]
policy = "thompson"
policy_params = { seed = 1 }
features = FEATURES
feedback_ttl_seconds = 3600
shadow = { mode = "all" }  # hostile requests reach the shadow queue too
[[deployments.main.versions]]
name = "good"
artifact = "ARTIFACTS/good.skops"
[[deployments.main.versions]]
name = "good2"
artifact = "ARTIFACTS/good2.skops"

[deployments.solo]
policy = "epsilon-greedy"
policy_params = { seed = 2 }
features = FEATURES
[[deployments.solo.versions]]
name = "only"
artifact = "ARTIFACTS/good.skops"

[deployments.states]
policy = "epsilon-greedy"
policy_params = { seed = 3 }
features = FEATURES
guardrail = false
[[deployments.states.versions]]
name = "a"
artifact = "ARTIFACTS/good.skops"
[[deployments.states.versions]]
name = "b"
artifact = "ARTIFACTS/good.skops"
[[deployments.states.versions]]
name = "c"
artifact = "ARTIFACTS/good.skops"
[[deployments.states.versions]]
name = "d"
artifact = "ARTIFACTS/good.skops"

[deployments.short]
policy = "epsilon-greedy"
policy_params = { seed = 4 }
features = FEATURES
feedback_ttl_seconds = 0.5
[[deployments.short.versions]]
name = "v1"
artifact = "ARTIFACTS/good.skops"
"""
LIMITS = "max_batch = 10\nmax_body_bytes = 65536"


# --------------------------------------------------------------------------- helpers
def auth(key: str | bytes | None) -> dict[str, Any]:
    return {} if key is None else {"Authorization": (b"Bearer " + key) if isinstance(key, bytes)
                                   else f"Bearer {key}"}


def raw_http(port: int, data: bytes, timeout: float = 15.0) -> tuple[int, bytes, bytes]:
    """Send bytes as they are; the first response's status, head and body (0 if none)."""
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        with contextlib.suppress(OSError):
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if match is None:
        return 0, head, body
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    if length:
        body = body[:int(length.group(1))]
    return int(match.group(1)), head, body


def check_answer(status: int, body: bytes, content_type: str, expected: int | set[int],
                 pattern: str, *, protocol_level: bool = False) -> None:
    """The one promise for every bad request: the expected 4xx, no 5xx, no traceback, and a
    JSON detail that names what was wrong (protocol-level refusals may be plain text)."""
    text = body.decode("utf-8", "replace")
    assert status < 500, f"server error {status}: {text[:500]}"
    assert not TRACEBACK.search(text), f"traceback in the body: {text[:1000]}"
    allowed = {expected} if isinstance(expected, int) else expected
    assert status in allowed, f"expected {sorted(allowed)}, got {status}: {text[:500]}"
    if protocol_level and "json" not in content_type:
        return
    assert "json" in content_type, f"not JSON ({content_type}): {text[:300]}"
    detail = json.loads(text).get("detail")
    assert isinstance(detail, str) and detail.strip(), f"no string detail: {text[:300]}"
    assert re.search(pattern, detail, re.IGNORECASE), \
        f"detail does not name the problem (/{pattern}/): {detail[:500]}"


def deep(n: int, open_: str = "[", close: str = "]", inner: str = "") -> str:
    return open_ * n + inner + close * n


def features_json(**override: str) -> str:
    """The features of ONE as JSON text, some values replaced by raw JSON tokens."""
    values = {name: json.dumps(value) for name, value in ONE.items()}
    values.update(override)
    return "{" + ", ".join(f'"{k}": {v}' for k, v in values.items()) + "}"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --------------------------------------------------------------------------- crafted skops
def crafted_skops(template: Path, out: Path, node: dict[str, Any]) -> None:
    """A real skops zip of a LogisticRegression whose attribute ``extra_`` is ``node``."""
    with zipfile.ZipFile(template) as source:
        files = {name: source.read(name) for name in source.namelist()}
    schema = json.loads(files["schema.json"])
    schema["content"]["content"]["extra_"] = node
    files["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(out, "w") as target:
        for name, data in files.items():
            target.writestr(name, data)


def json_node(value: Any) -> dict[str, Any]:
    kind = {str: "str", bool: "bool", type(None): "NoneType", int: "int"}[type(value)]
    return {"__class__": kind, "__module__": "builtins", "__loader__": "JsonNode",
            "content": json.dumps(value), "is_json": True, "__id__": id(value) + 1}


def reduce_node(module: str, name: str, *args: Any) -> dict[str, Any]:
    """A node whose loading calls module.name(*args)."""
    return {"__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode",
            "content": {"__class__": "tuple", "__module__": "builtins",
                        "__loader__": "TupleNode", "content": [json_node(a) for a in args],
                        "__id__": 1}, "__id__": 2}


class WritesMarker:
    """Unpickling this writes the marker file (what numpy.load(allow_pickle=True) would do)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def make_artifacts(folder: Path, shared: Path, markers: Path) -> None:
    """Copies of the session's artifacts plus the hostile ones; each crafted file would write
    its own marker file in ``markers``."""
    for name in ("good.skops", "good2.skops", "bad.skops", "junk.skops", "exploding.joblib",
                 "good.onnx"):
        shutil.copy(shared / name, folder / name)
    (folder / "notes.txt").write_text("not a model")
    (folder / "link.skops").symlink_to("/etc/passwd")
    x, y = make_rows(200)
    model = LogisticRegression().fit(x, y)
    model.extra_ = ("placeholder",)
    dump(model, folder / "template.skops")

    def write(name: str) -> str:
        return f"open({str(markers / name)!r}, 'w').write('pwned')"

    (folder / "payload.pkl").write_bytes(pickle.dumps(WritesMarker(str(markers / "npload"))))
    crafted_skops(folder / "template.skops", folder / "exec.skops",
                  reduce_node("builtins", "exec", write("exec")))
    crafted_skops(folder / "template.skops", folder / "startup.skops",
                  reduce_node("builtins", "exec", write("startup")))
    crafted_skops(folder / "template.skops", folder / "eval.skops",
                  reduce_node("builtins", "eval", f"exec({write('eval')!r})"))
    crafted_skops(folder / "template.skops", folder / "system.skops",
                  reduce_node("os", "system", f"touch {markers / 'system'}"))
    crafted_skops(folder / "template.skops", folder / "npload.skops",
                  reduce_node("numpy", "load", str(folder / "payload.pkl"), None, True))
    function = {"__class__": "exec", "__module__": "builtins", "__loader__": "FunctionNode",
                "__id__": 3}
    crafted_skops(folder / "template.skops", folder / "function.skops", function)


CRAFTED = {"exec.skops": "builtins.exec", "eval.skops": "builtins.eval",
           "system.skops": "os.system", "npload.skops": "numpy.load",
           "function.skops": "builtins.exec"}


# --------------------------------------------------------------------------- the server
@dataclass
class Hostile:
    server: Server
    artifacts: Path
    markers: Path  # a crafted file that ran its code left a file here
    folder: Path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, artifacts) -> Hostile:
    folder = tmp_path_factory.mktemp("hostile")
    models = folder / "models"
    models.mkdir()
    markers = folder / "markers"
    markers.mkdir()
    make_artifacts(models, artifacts, markers)
    config = write_config(folder, models, DEPLOYMENTS.replace("ARTIFACTS", str(models)),
                          extra=LIMITS)
    server = Server(config).start()
    admin = auth(ADMIN_KEY)
    # Wrong-state fixtures: states/c retired, states/b rolled back (a and d stay live).
    httpx.delete(f"{server.url}{P}/states/versions/c", headers=admin, timeout=30)
    httpx.post(f"{server.url}{P}/states/versions/b/rollback", headers=admin,
               json={"reason": "fixture"}, timeout=30)
    yield Hostile(server, models, markers, folder)
    server.stop()


def open_decision(url: str, deployment: str = "main") -> tuple[str, int]:
    """A fresh decision id and the correct label for it."""
    response = httpx.post(f"{url}{P}/{deployment}/predict", json={"features": ONE},
                          headers=auth(CLIENT_KEY), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["decision_id"], int(Y[0])


# --------------------------------------------------------------------------- the cases
@dataclass
class Case:
    """One bad request. ``text`` is the body as sent ("$OPEN" becomes an open decision id);
    ``raw`` a whole HTTP request sent on a socket as it is."""

    id: str
    method: str
    path: str
    status: int | set[int]
    pattern: str
    body: Any = None
    text: str | None = None
    key: str | bytes | None = CLIENT_KEY
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str | None = "application/json"
    raw: bytes | None = None
    protocol_level: bool = False
    keeps_open: bool = False  # the decision must still take its correct label afterwards


def body_case(id: str, path: str, body: Any, status: int | set[int], pattern: str,
              **kw: Any) -> Case:
    return Case(id, kw.pop("method", "POST"), path, status, pattern, body=body, **kw)


def text_case(id: str, path: str, text: str, status: int | set[int], pattern: str,
              **kw: Any) -> Case:
    return Case(id, kw.pop("method", "POST"), path, status, pattern, text=text, **kw)


def raw_case(id: str, request: str | bytes, status: int | set[int], pattern: str,
             protocol_level: bool = True) -> Case:
    data = request.encode("latin-1") if isinstance(request, str) else request
    return Case(id, "RAW", "", status, pattern, raw=data, protocol_level=protocol_level)


PRED, FEED, EVENTS, VERS = f"{P}/main/predict", f"{P}/main/feedback", f"{P}/main/events", \
    f"{P}/main/versions"
FOUR_XX = set(range(400, 500))
# The README: NaN or Infinity, integers past 64 bits, NUL characters and nesting deeper than
# 64 are malformed JSON (400), refused while parsing, whatever field holds them.
DEEP_JSON = r"nest|deep|depth"
NON_FINITE = r"NaN|Infinity|finite"
HUGE_NUMBER = r"integer|number|digit|large|64"
NUL = r"NUL|\\u0000|control"
OPEN = "$OPEN"


def label_case(id: str, label_json: str, pattern: str = "label", status: int = 422) -> Case:
    return text_case(id, FEED, f'{{"decision_id": "{OPEN}", "label": {label_json}}}', status,
                     pattern, keeps_open=True)


def request_line(method: str, path: str, headers: list[str], body: bytes = b"") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


VALID = json.dumps({"features": ONE}).encode()
BEARER = f"Authorization: Bearer {CLIENT_KEY}"

CASES: list[Case] = [
    # ---- keys
    Case("no-key", "GET", f"{P}/main", 401, "key", key=None),
    Case("unknown-key", "GET", f"{P}/main", 401, "key", key="wrong-key-0123456789"),
    Case("non-ascii-key", "GET", f"{P}/main", 401, "key",
         key="clé-ключ-0123456789".encode()),
    Case("non-utf8-key", "GET", f"{P}/main", 401, "key", key=b"\xff\xfe\xfd-0123456789abc"),
    Case("non-ascii-x-api-key", "GET", f"{P}/main", 401, "key", key=None,
         headers={"X-API-Key": "ключ-0123456789abcdef".encode()}),
    raw_case("empty-bearer", request_line("GET", f"{P}/main", ["Authorization: Bearer"]), 401,
             "key", protocol_level=False),
    Case("basic-auth", "GET", f"{P}/main", 401, "key", key=None,
         headers={"Authorization": "Basic Y2xpZW50OmtleQ=="}),
    Case("client-key-with-suffix", "GET", f"{P}/main", 401, "key", key=CLIENT_KEY + "x"),
    Case("key-with-tab", "GET", f"{P}/main", 401, "key", key="client-key\t0123456789"),
    Case("huge-key", "GET", f"{P}/main", {401, 431, 400}, "key|header|large", key="k" * 8000),
    raw_case("key-with-escape", request_line(
        "GET", f"{P}/main", ["Authorization: Bearer client-key\x1b[2J0123456789"]),
        {400, 401}, "key"),
    raw_case("key-with-del", request_line(
        "GET", f"{P}/main", ["Authorization: Bearer client-key\x7f0123456789"]),
        {400, 401}, "key"),
    raw_case("key-with-nul", request_line(
        "GET", f"{P}/main", ["Authorization: Bearer client-key\x000123456789"]),
        {400, 401}, "key"),
    Case("no-key-on-admin-route", "POST", VERS, 401, "key", key=None,
         body={"name": "v9", "artifact": "good.skops"}),
    Case("client-key-register", "POST", VERS, 403, "admin",
         body={"name": "v9", "artifact": "good.skops"}),
    Case("client-key-rollback", "POST", f"{P}/states/versions/a/rollback", 403, "admin",
         body={"reason": "x"}),
    Case("client-key-retire", "DELETE", f"{P}/states/versions/a", 403, "admin"),
    Case("client-key-reinstate", "POST", f"{P}/states/versions/b/reinstate", 403, "admin",
         body={"reason": "x"}),
    Case("client-key-promote", "POST", f"{P}/states/versions/a/promote", 403, "admin",
         body={"reason": "x"}),
    # ---- predict: JSON itself
    text_case("malformed-json", PRED, '{"features": {', 400, "JSON"),
    text_case("empty-body", PRED, "", 400, "JSON|body|empty"),
    text_case("trailing-garbage", PRED, json.dumps({"features": ONE}) + " xx", 400, "JSON"),
    text_case("single-quotes", PRED, "{'features': {}}", 400, "JSON"),
    text_case("invalid-utf8", PRED, "", 400, "JSON|UTF|decode|body"),  # bytes set below
    text_case("deep-list-1000", PRED, '{"features": ' + deep(1000) + "}", 400,
              DEEP_JSON),
    text_case("deep-object-1000", PRED, deep(1000, '{"a": ', "}", "1"), 400,
              DEEP_JSON),
    text_case("deep-instance-1000", PRED, '{"instances": [' + deep(1000) + "]}", 400,
              DEEP_JSON),
    text_case("deep-feature-value-1000", PRED,
              '{"features": ' + features_json(x0=deep(1000)) + "}", 400,
              DEEP_JSON),
    text_case("400-digit-feature", PRED,
              '{"features": ' + features_json(x0="1" + "0" * 399) + "}", 400, HUGE_NUMBER),
    text_case("400-digit-negative-feature", PRED,
              '{"features": ' + features_json(x1="-" + "9" * 400) + "}", 400, HUGE_NUMBER),
    text_case("1e400-feature", PRED, '{"features": ' + features_json(x2="1e400") + "}",
              {400, 422}, "x2|" + HUGE_NUMBER + "|" + NON_FINITE),
    text_case("2**64-feature", PRED, '{"features": ' + features_json(x3=str(2**64)) + "}",
              {400, 422}, "x3|" + HUGE_NUMBER),
    text_case("400-digit-body", PRED, "1" * 400, 400, HUGE_NUMBER),
    text_case("nan-feature", PRED, '{"features": ' + features_json(x0="NaN") + "}", 400,
              NON_FINITE),
    text_case("infinity-feature", PRED, '{"features": ' + features_json(x1="Infinity") + "}",
              400, NON_FINITE),
    text_case("minus-infinity-feature", PRED,
              '{"features": ' + features_json(x2="-Infinity") + "}", 400, NON_FINITE),
    text_case("nan-in-second-instance", PRED,
              '{"instances": [' + features_json() + ", " + features_json(x3="NaN") + "]}",
              400, NON_FINITE),
    body_case("nul-in-feature-name", PRED, {"features": {**ONE, "x\u00000": 1.0}}, 400, NUL),
    body_case("nul-as-feature-value", PRED, {"features": {**ONE, "x0": "\u0000"}}, 400, NUL),
    body_case("nul-in-instance-value", PRED, {"instances": [{**ONE, "x1": "a\u0000b"}]}, 400,
              NUL),
    body_case("huge-string-feature", PRED, {"features": {**ONE, "x0": "y" * 60_000}}, 422,
              "x0"),
    body_case("huge-feature-name", PRED, {"features": {**ONE, "z" * 60_000: 1.0}}, 422,
              "feature"),
    body_case("features-list", PRED, {"features": [1, 2, 3, 4]}, 422, "features"),
    body_case("features-string", PRED, {"features": "x0=1"}, 422, "features"),
    body_case("features-null", PRED, {"features": None}, 422, "features|instances"),
    body_case("feature-bool", PRED, {"features": {**ONE, "x1": True}}, 422, "x1"),
    body_case("feature-null", PRED, {"features": {**ONE, "x2": None}}, 422, "x2"),
    body_case("feature-numeric-string", PRED, {"features": {**ONE, "x0": "1.5"}}, 422, "x0"),
    body_case("feature-object", PRED, {"features": {**ONE, "x3": {"v": 1}}}, 422, "x3"),
    body_case("feature-list", PRED, {"features": {**ONE, "x3": [1]}}, 422, "x3"),
    body_case("missing-feature", PRED, {"features": {k: v for k, v in ONE.items() if k != "x3"}},
              422, "x3"),
    body_case("unknown-feature", PRED, {"features": {**ONE, "x9": 1.0}}, 422, "x9"),
    body_case("empty-features", PRED, {"features": {}}, 422, "x0|missing"),
    body_case("features-and-instances", PRED, {"features": ONE, "instances": [ONE]}, 422,
              "features.*instances|instances.*features"),
    body_case("neither-features-nor-instances", PRED, {}, 422,
              "features.*instances|instances.*features"),
    body_case("unknown-top-level-field", PRED, {"feature": ONE}, 422, r"\bfeature\b"),
    body_case("body-is-a-list", PRED, [ONE], 422, "body|object|dict|features"),
    body_case("body-is-null", PRED, None, 422, "body|object|dict|features"),
    body_case("empty-instances", PRED, {"instances": []}, 422, "instances"),
    body_case("over-max-instances", PRED, {"instances": [ONE] * 11}, 413, "instances"),
    body_case("instances-object", PRED, {"instances": ONE}, 422, "instances"),
    body_case("instance-not-an-object", PRED, {"instances": [ONE, 7]}, 422,
              r"instances\W*1"),
    body_case("oversize-body", PRED, {"instances": [{**ONE, "x0": "y" * 100_000}]}, 413,
              "limit|large|bytes"),
    text_case("text-plain-content-type", PRED, json.dumps({"features": ONE}),
              {400, 415, 422}, "content.type|JSON|media", content_type="text/plain"),
    text_case("form-content-type", PRED, "features=1", {400, 415, 422},
              "content.type|JSON|media",
              content_type="application/x-www-form-urlencoded"),
    raw_case("content-length-shorter-than-body", request_line(
        "POST", PRED, [BEARER, "Content-Type: application/json", "Content-Length: 5"], VALID),
        {400, 422}, "JSON"),
    raw_case("content-length-not-a-number", request_line(
        "POST", PRED, [BEARER, "Content-Type: application/json", "Content-Length: abc"],
        VALID), FOUR_XX, "length"),
    raw_case("content-length-negative", request_line(
        "POST", PRED, [BEARER, "Content-Type: application/json", "Content-Length: -5"],
        VALID), FOUR_XX, "length"),
    raw_case("content-length-twice", request_line(
        "POST", PRED, [BEARER, "Content-Type: application/json",
                       f"Content-Length: {len(VALID)}", "Content-Length: 3"], VALID),
        FOUR_XX, "length"),
    raw_case("content-length-and-chunked", request_line(
        "POST", PRED, [BEARER, "Content-Type: application/json", "Content-Length: 4",
                       "Transfer-Encoding: chunked"], b"0\r\n\r\n"), FOUR_XX,
        "length|JSON|encoding"),
    body_case("predict-unknown-deployment", f"{P}/{NOPE}/predict", {"features": ONE}, 404,
              NOPE),
    body_case("predict-nul-deployment-name", f"{P}/%00/predict", {"features": ONE}, 404,
              "deployment|not found"),
    body_case("predict-traversal-deployment-name", f"{P}/..%2F..%2Fetc/predict",
              {"features": ONE}, 404, "deployment|not found|route"),
    # ---- feedback
    body_case("feedback-unknown-id", FEED, {"decision_id": "never-issued", "label": 1}, 404,
              "never-issued"),
    body_case("feedback-missing-label", FEED, {"decision_id": "abc"}, 422, "label"),
    body_case("feedback-missing-id", FEED, {"label": 1}, 422, "decision_id"),
    body_case("feedback-int-id", FEED, {"decision_id": 12, "label": 1}, 422, "decision_id"),
    body_case("feedback-empty-id", FEED, {"decision_id": "", "label": 1}, {404, 422},
              "decision"),
    body_case("feedback-huge-id", FEED, {"decision_id": "a" * 5000, "label": 1}, {404, 422},
              "decision"),
    body_case("feedback-nul-in-id", FEED, {"decision_id": "ab\u0000cd", "label": 1}, 400,
              NUL),
    label_case("feedback-label-list", "[1]"),
    label_case("feedback-label-object", '{"a": 1}'),
    label_case("feedback-label-null", "null"),
    label_case("feedback-label-nan", "NaN", NON_FINITE, 400),
    label_case("feedback-label-infinity", "Infinity", NON_FINITE, 400),
    label_case("feedback-label-minus-infinity", "-Infinity", NON_FINITE, 400),
    label_case("feedback-label-400-digits", "1" + "0" * 399, HUGE_NUMBER, 400),
    label_case("feedback-label-huge-string", json.dumps("y" * 60_000)),
    label_case("feedback-label-nul", json.dumps("\u0000"), NUL, 400),
    text_case("feedback-label-deep", FEED,
              f'{{"decision_id": "{OPEN}", "label": {deep(1000)}}}', 400, DEEP_JSON,
              keeps_open=True),
    body_case("feedback-unknown-field", FEED, {"decision_id": "abc", "label": 1, "foo": 2}, 422,
              "foo"),
    body_case("feedback-empty-list", FEED, [], 422, "empty|list|feedback"),
    body_case("feedback-over-max-list", FEED, [{"decision_id": "a", "label": 1}] * 11, 413,
              "feedback|items|at most"),
    body_case("feedback-list-with-a-number", FEED, [{"decision_id": "a", "label": 1}, 5], 422,
              r"\b1\b|item|object|dict"),
    body_case("feedback-body-number", FEED, 5, 422, "body|object|dict|list|decision"),
    text_case("feedback-malformed-json", FEED, '{"decision_id": ', 400, "JSON"),
    body_case("feedback-unknown-deployment", f"{P}/{NOPE}/feedback",
              {"decision_id": "abc", "label": 1}, 404, NOPE),
    body_case("feedback-list-unknown-deployment", f"{P}/{NOPE}/feedback",
              [{"decision_id": "abc", "label": 1}], 404, NOPE),
    # ---- reads
    Case("one-deployment-unknown", "GET", f"{P}/{NOPE}", 404, NOPE),
    Case("deployments-without-key", "GET", P, 401, "key", key=None),
    Case("events-since-2**63", "GET", f"{EVENTS}?since={2**63}", 422, "since"),
    Case("events-since-10**30", "GET", f"{EVENTS}?since={10**30}", 422, "since"),
    Case("events-since-negative", "GET", f"{EVENTS}?since=-1", 422, "since"),
    Case("events-since-text", "GET", f"{EVENTS}?since=x", 422, "since"),
    Case("events-since-float", "GET", f"{EVENTS}?since=1.5", 422, "since"),
    Case("events-since-nul", "GET", f"{EVENTS}?since=%00", 422, "since"),
    Case("events-limit-0", "GET", f"{EVENTS}?limit=0", 422, "limit"),
    Case("events-limit-10**6", "GET", f"{EVENTS}?limit={10**6}", 422, "limit"),
    Case("events-limit-negative", "GET", f"{EVENTS}?limit=-1", 422, "limit"),
    Case("events-limit-2**64", "GET", f"{EVENTS}?limit={2**64}", 422, "limit"),
    Case("events-unknown-deployment", "GET", f"{P}/{NOPE}/events", 404, NOPE),
    # ---- register (admin)
    body_case("register-outside-artifact-dirs", VERS, {"name": "v9", "artifact": "/etc/passwd"},
              422, "artifact_dirs|outside", key=ADMIN_KEY),
    body_case("register-relative-traversal", VERS,
              {"name": "v9", "artifact": "../../../../../../etc/passwd"}, 422,
              "artifact_dirs|outside", key=ADMIN_KEY),
    body_case("register-symlink-out", VERS, {"name": "v9", "artifact": "link.skops"}, 422,
              "artifact_dirs|outside|link", key=ADMIN_KEY),
    body_case("register-missing-file", VERS, {"name": "v9", "artifact": "missing.skops"}, 422,
              "not found|missing", key=ADMIN_KEY),
    body_case("register-pickle-without-opt-in", VERS,
              {"name": "v9", "artifact": "exploding.joblib"}, 422, "allow_pickle",
              key=ADMIN_KEY),
    body_case("register-junk-file", VERS, {"name": "v9", "artifact": "junk.skops"}, 422,
              "junk", key=ADMIN_KEY),
    body_case("register-unknown-format", VERS, {"name": "v9", "artifact": "notes.txt"}, 422,
              r"format|\.txt", key=ADMIN_KEY),
    body_case("register-a-directory", VERS, {"name": "v9", "artifact": "."}, 422,
              "artifact|not found|format|file", key=ADMIN_KEY),
    body_case("register-nul-in-artifact", VERS, {"name": "v9", "artifact": "good\u0000.skops"},
              400, NUL, key=ADMIN_KEY),
    body_case("register-huge-artifact", VERS, {"name": "v9", "artifact": "a" * 5000}, 422,
              "artifact", key=ADMIN_KEY),
    body_case("register-duplicate-name", VERS, {"name": "good", "artifact": "good.skops"}, 409,
              "good", key=ADMIN_KEY),
    body_case("register-dotdot-name", VERS, {"name": "../x", "artifact": "good.skops"}, 422,
              "name", key=ADMIN_KEY),
    body_case("register-empty-name", VERS, {"name": "", "artifact": "good.skops"}, 422,
              "name", key=ADMIN_KEY),
    body_case("register-nul-name", VERS, {"name": "v\u00009", "artifact": "good.skops"}, 400,
              NUL, key=ADMIN_KEY),
    body_case("register-long-name", VERS, {"name": "v" * 1000, "artifact": "good.skops"}, 422,
              "name", key=ADMIN_KEY),
    body_case("register-score-above-1", VERS,
              {"name": "v9", "artifact": "good.skops", "validation_score": 1.5}, 422,
              "validation_score", key=ADMIN_KEY),
    text_case("register-score-nan", VERS,
              '{"name": "v9", "artifact": "good.skops", "validation_score": NaN}', 400,
              NON_FINITE, key=ADMIN_KEY),
    body_case("register-score-text", VERS,
              {"name": "v9", "artifact": "good.skops", "validation_score": "high"}, 422,
              "validation_score", key=ADMIN_KEY),
    body_case("register-artifact-int", VERS, {"name": "v9", "artifact": 5}, 422, "artifact",
              key=ADMIN_KEY),
    body_case("register-missing-artifact", VERS, {"name": "v9"}, 422, "artifact",
              key=ADMIN_KEY),
    body_case("register-unknown-field", VERS,
              {"name": "v9", "artifact": "good.skops", "foo": 1}, 422, "foo", key=ADMIN_KEY),
    text_case("register-malformed-json", VERS, '{"name": ', 400, "JSON", key=ADMIN_KEY),
    body_case("register-unknown-deployment", f"{P}/{NOPE}/versions",
              {"name": "v9", "artifact": "good.skops"}, 404, NOPE, key=ADMIN_KEY),
    # ---- rollback / retire / reinstate (admin)
    body_case("rollback-unknown-version", f"{P}/states/versions/v7/rollback", {}, 404, "v7",
              key=ADMIN_KEY),
    Case("retire-unknown-version", "DELETE", f"{P}/states/versions/v7", 404, "v7",
         key=ADMIN_KEY),
    body_case("reinstate-unknown-version", f"{P}/states/versions/v7/reinstate", {}, 404, "v7",
              key=ADMIN_KEY),
    body_case("rollback-unknown-deployment", f"{P}/{NOPE}/versions/a/rollback", {}, 404, NOPE,
              key=ADMIN_KEY),
    Case("retire-unknown-deployment", "DELETE", f"{P}/{NOPE}/versions/a", 404, NOPE,
         key=ADMIN_KEY),
    body_case("reinstate-unknown-deployment", f"{P}/{NOPE}/versions/a/reinstate", {}, 404,
              NOPE, key=ADMIN_KEY),
    body_case("rollback-a-retired-version", f"{P}/states/versions/c/rollback", {}, 409,
              r"\bc\b|live|retired", key=ADMIN_KEY),
    body_case("rollback-a-rolled-back-version", f"{P}/states/versions/b/rollback", {}, 409,
              r"\bb\b|live|rolled", key=ADMIN_KEY),
    body_case("reinstate-a-live-version", f"{P}/states/versions/a/reinstate", {}, 409,
              r"\ba\b|live", key=ADMIN_KEY),
    body_case("reinstate-a-retired-version", f"{P}/states/versions/c/reinstate", {}, 409,
              r"\bc\b|retired", key=ADMIN_KEY),
    body_case("rollback-the-last-live-version", f"{P}/solo/versions/only/rollback", {}, 409,
              "last", key=ADMIN_KEY),
    body_case("promote-unknown-version", f"{P}/states/versions/v7/promote", {}, 404, "v7",
              key=ADMIN_KEY),
    body_case("promote-unknown-deployment", f"{P}/{NOPE}/versions/a/promote", {}, 404, NOPE,
              key=ADMIN_KEY),
    body_case("promote-a-live-version", f"{P}/states/versions/a/promote", {}, 409,
              r"only dark versions", key=ADMIN_KEY),
    body_case("promote-a-retired-version", f"{P}/states/versions/c/promote", {}, 409,
              r"\bc\b|retired", key=ADMIN_KEY),
    body_case("promote-reason-too-long", f"{P}/states/versions/a/promote",
              {"reason": "r" * 5000}, 422, "reason", key=ADMIN_KEY),
    text_case("promote-malformed-json", f"{P}/states/versions/a/promote", '{"reason": ',
              400, "JSON", key=ADMIN_KEY),
    body_case("promote-nul-version", f"{P}/states/versions/%00/promote", {}, 404,
              "version|not found", key=ADMIN_KEY),
    Case("retire-the-last-live-version", "DELETE", f"{P}/solo/versions/only", 409, "last",
         key=ADMIN_KEY),
    body_case("rollback-reason-too-long", f"{P}/states/versions/d/rollback",
              {"reason": "r" * 5000}, 422, "reason", key=ADMIN_KEY),
    body_case("rollback-reason-not-text", f"{P}/states/versions/d/rollback", {"reason": 5},
              422, "reason", key=ADMIN_KEY),
    text_case("rollback-malformed-json", f"{P}/states/versions/d/rollback", '{"reason": ',
              400, "JSON", key=ADMIN_KEY),
    body_case("rollback-nul-version", f"{P}/states/versions/%00/rollback", {}, 404,
              "version|not found", key=ADMIN_KEY),
    # ---- methods
    Case("put-predict", "PUT", PRED, 405, "method", body={"features": ONE}),
    Case("get-predict", "GET", PRED, 405, "method"),
    Case("delete-deployments", "DELETE", P, 405, "method"),
    Case("patch-deployment", "PATCH", f"{P}/main", 405, "method", body={}),
    Case("put-feedback", "PUT", FEED, 405, "method", body={}),
    Case("get-rollback", "GET", f"{P}/states/versions/a/rollback", 405, "method",
         key=ADMIN_KEY),
    Case("post-healthz", "POST", "/healthz", 405, "method", body={}),
    Case("post-readyz", "POST", "/readyz", 405, "method", body={}),
    Case("delete-metrics", "DELETE", "/metrics", 405, "method"),
    # ---- unknown routes
    Case("unknown-api-version", "GET", "/v2/deployments", 404, "not found|route|path"),
    Case("unknown-subroute", "GET", f"{P}/main/nope", 404, "not found|route|path"),
    Case("events-extra-segment", "GET", f"{EVENTS}/extra", 404, "not found|route|path"),
    Case("non-utf8-path", "GET", "/%ff%fe", 404, "not found|route|path"),
    Case("very-long-path", "GET", "/" + "a" * 8000, {404, 414}, "not found|route|path|long"),
]
INVALID_UTF8 = b'{"features": {"x0": "\xff\xfe"}}'


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_request_gets_a_4xx_naming_the_problem(hostile, case):
    url = hostile.server.url
    if case.raw is not None:
        status, head, body = raw_http(hostile.server.port, case.raw)
        assert status != 0 or not head, f"no HTTP response: {head[:200]!r}"
        if status == 0:  # dropped without an answer: acceptable for a protocol violation
            return
        content_type = (re.search(rb"(?i)\r\ncontent-type: *([^\r]*)", head) or
                        re.match(b"(.*)", b"")).group(1).decode("latin-1")
        check_answer(status, body, content_type, case.status, case.pattern,
                     protocol_level=case.protocol_level)
        return
    decision = None
    content: bytes | None = None
    if case.id == "invalid-utf8":
        content = INVALID_UTF8
    elif case.text is not None:
        text = case.text
        if OPEN in text:
            decision = open_decision(url)
            text = text.replace(OPEN, decision[0])
        content = text.encode()
    elif case.body is not None or case.method in ("POST", "PUT", "PATCH"):
        content = json.dumps(case.body).encode()
    request_headers: dict[str, Any] = {**auth(case.key), **case.headers}
    if content is not None and case.content_type:
        request_headers["Content-Type"] = case.content_type
    response = httpx.request(case.method, url + case.path, content=content,
                             headers=request_headers, timeout=30)
    check_answer(response.status_code, response.content,
                 response.headers.get("content-type", ""), case.status, case.pattern)
    if case.keeps_open:
        decision_id, label = decision
        after = httpx.post(f"{url}{FEED}", json={"decision_id": decision_id, "label": label},
                           headers=auth(CLIENT_KEY), timeout=30)
        assert after.status_code == 200, \
            f"the bad label closed the decision: the right one got {after.status_code} " \
            f"{after.text[:300]}"


def test_there_are_at_least_60_distinct_cases():
    assert len({c.id for c in CASES}) == len(CASES) >= 60


# --------------------------------------------------------------------------- feedback rules
def test_duplicate_feedback_is_409_and_counted_once(hostile):
    url, key = hostile.server.url, auth(CLIENT_KEY)

    def fed() -> int:
        report = httpx.get(f"{url}{P}/main", headers=key, timeout=30).json()
        return sum(v["feedbacks"] for v in report["versions"])

    before = fed()
    decision_id, label = open_decision(url)
    first = httpx.post(f"{url}{FEED}", json={"decision_id": decision_id, "label": label},
                       headers=key, timeout=30)
    assert first.status_code == 200, first.text
    for _ in range(3):
        again = httpx.post(f"{url}{FEED}", json={"decision_id": decision_id, "label": label},
                           headers=key, timeout=30)
        check_answer(again.status_code, again.content, again.headers["content-type"], 409,
                     "already|duplicate")
    listed = httpx.post(f"{url}{FEED}", json=[{"decision_id": decision_id, "label": label}],
                        headers=key, timeout=30)
    assert listed.status_code == 200 and listed.json()["results"][0]["status"] == "duplicate"
    assert fed() == before + 1


def test_late_feedback_is_410(hostile):
    url = hostile.server.url
    decision_id, label = open_decision(url, "short")
    time.sleep(1.0)  # the deployment's TTL is 0.5 s: waiting longer is always enough
    late = httpx.post(f"{url}{P}/short/feedback", json={"decision_id": decision_id,
                                                        "label": label},
                      headers=auth(CLIENT_KEY), timeout=30)
    check_answer(late.status_code, late.content, late.headers["content-type"], 410,
                 "older|expired|ttl")


LABELLED = """
[deployments.binary]
policy = "thompson"
policy_params = { seed = 5 }
features = FEATURES
labels = [0, 1]
[[deployments.binary.versions]]
name = "good"
artifact = "ARTIFACTS/good.skops"

[deployments.owned]
policy = "thompson"
features = FEATURES
feedback_same_key = true
[[deployments.owned.versions]]
name = "good"
artifact = "ARTIFACTS/good.skops"
"""


@pytest.mark.parametrize("label", ["2", "-1", '"1"', '"yes"', "1.5", "true", "[1]", '{"a": 1}'])
def test_a_label_outside_the_declared_labels_is_422_and_leaves_the_decision_open(
        tmp_path_factory, artifacts, label, labelled_server):
    url = labelled_server.url
    decision_id, correct = open_decision(url, "binary")
    wrong = httpx.post(f"{url}{P}/binary/feedback", headers=auth(CLIENT_KEY), timeout=30,
                       content=f'{{"decision_id": "{decision_id}", "label": {label}}}',
                       )
    check_answer(wrong.status_code, wrong.content, wrong.headers.get("content-type", ""), 422,
                 "label")
    right = httpx.post(f"{url}{P}/binary/feedback", headers=auth(CLIENT_KEY), timeout=30,
                       json={"decision_id": decision_id, "label": correct})
    assert right.status_code == 200, right.text


OTHER_CLIENT_KEY = "other-client-key-0123456789"


@pytest.fixture(scope="module")
def labelled_server(tmp_path_factory, artifacts):
    folder = tmp_path_factory.mktemp("labelled")
    config = write_config(folder, artifacts, LABELLED.replace("ARTIFACTS", str(artifacts)),
                          extra=f'[[api_keys]]\nkey = "{OTHER_CLIENT_KEY}"\nscope = "client"\n')
    server = Server(config).start()
    yield server
    server.stop()


# --------------------------------------------------------------------------- crafted artifacts
@pytest.mark.parametrize("artifact", sorted(CRAFTED))
def test_a_skops_file_that_runs_code_is_refused_naming_the_type(hostile, artifact):
    response = httpx.post(f"{hostile.server.url}{VERS}", headers=auth(ADMIN_KEY), timeout=60,
                          json={"name": f"crafted-{artifact.split('.')[0]}",
                                "artifact": artifact})
    ran = sorted(p.name for p in hostile.markers.iterdir())
    assert artifact.split(".")[0] not in ran, f"loading {artifact} ran its code"
    check_answer(response.status_code, response.content,
                 response.headers.get("content-type", ""), 422, re.escape(CRAFTED[artifact]))


def test_crafted_skops_in_the_config_never_runs_either(tmp_path, hostile):
    """At start-up (a restart, another replica) the same file is refused, never loaded."""
    config = write_config(tmp_path, hostile.artifacts, f"""
[deployments.main]
features = FEATURES
[[deployments.main.versions]]
name = "good"
artifact = "{hostile.artifacts}/good.skops"
[[deployments.main.versions]]
name = "crafted"
artifact = "{hostile.artifacts}/startup.skops"
""")
    server = Server(config).start(wait=False)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/readyz", timeout=1).status_code in (200, 503):
                    break
            time.sleep(0.1)
        assert not (hostile.markers / "startup").exists(), "the crafted file ran at start-up"
        log = server.log.read_text()
        assert "builtins.exec" in log, f"the refusal does not name the type: {log[-2000:]}"
    finally:
        server.stop()
    # The hostile server, restarted, loads none of the files it was offered.
    for marker in hostile.markers.iterdir():
        marker.unlink()
    hostile.server.stop()
    hostile.server.start()
    ran = sorted(p.name for p in hostile.markers.iterdir())
    assert not ran, f"a restart ran the code of {ran}"


# --------------------------------------------------------------------------- decision ids
def estimated_bits(ids: list[str]) -> float:
    """Entropy of the ids, position by position, from the characters seen at each position
    (rounded up to the alphabet they come from: 15 of 16 hex digits seen is 4 bits)."""
    width = max(len(i) for i in ids)
    bits = 0.0
    for position in range(width):
        seen = len({i[position] if position < len(i) else "" for i in ids})
        if seen > 1:
            alphabet = 2 ** math.ceil(math.log2(seen))
            bits += math.log2(alphabet if seen >= 0.75 * alphabet else seen)
    return bits


def neighbours(decision_id: str) -> set[str]:
    """Ids an attacker would try from one of theirs: +-1 on the trailing number or
    character, and the id's prefix with another counter."""
    guesses = set()
    digits = re.search(r"(\d+)$", decision_id)
    if digits:
        number, head = int(digits.group(1)), decision_id[:digits.start()]
        width = len(digits.group(1))
        for step in (-2, -1, 1, 2, 100):
            if number + step >= 0:
                guesses.add(f"{head}{number + step:0{width}d}")
                guesses.add(f"{head}{number + step}")
    for base in (16, 36):
        with contextlib.suppress(ValueError):
            tail = re.search(r"([0-9a-zA-Z]+)$", decision_id).group(1)
            value = int(tail, base)
            for step in (-1, 1):
                text = np.base_repr(value + step, base).lower()
                guesses.add(decision_id[:-len(tail)] + text.rjust(len(tail), "0"))
    for cut in (4, 8, 16):
        if len(decision_id) > cut:
            guesses.add(decision_id[:-cut] + "0" * cut)
    guesses.discard(decision_id)
    return guesses


def test_decision_ids_cannot_be_guessed(hostile):
    url, key = hostile.server.url, auth(CLIENT_KEY)
    ids: list[str] = []
    for start in range(0, 200, 10):
        response = httpx.post(f"{url}{PRED}", headers=key, timeout=30, json={
            "instances": [as_features(x) for x in X[start:start + 10]]})
        assert response.status_code == 200, response.text
        ids += [d["decision_id"] for d in response.json()["decisions"]]
    assert len(set(ids)) == 200
    prefix = ids[0][:next((n for n in range(len(ids[0])) if any(
        len(i) <= n or i[n] != ids[0][n] for i in ids)), len(ids[0]))]
    assert len(prefix) <= 4, f"every id starts with {prefix!r}"
    bits = estimated_bits(ids)
    assert bits >= 128, f"about {bits:.0f} random bits in ids like {ids[:3]}"
    mine = set(ids)
    guesses = set().union(*(neighbours(i) for i in ids[:20]))
    assert not guesses & mine, f"ids follow from each other: {sorted(guesses & mine)[:5]}"
    results = httpx.post(f"{url}{FEED}", headers=key, timeout=30, json=[
        {"decision_id": g, "label": 1} for g in sorted(guesses)[:10]]).json()["results"]
    assert {r["status"] for r in results} == {"unknown"}, results


# --------------------------------------------------------------------------- slow clients
def test_300_slow_unauthenticated_clients(tmp_path, artifacts):
    """150 send headers (Content-Length 1,000,000, within the default body limit) and 256 KB,
    then trickle a byte a second; 75 send the headers and never the body; 75 never finish
    their headers. Each is answered or dropped within 5 s, /healthz stays quick, and the
    server's memory stays flat: no key, no body buffered."""
    config = write_config(tmp_path, artifacts, f"""
[deployments.main]
policy = "thompson"
features = FEATURES
[[deployments.main.versions]]
name = "good"
artifact = "{artifacts}/good.skops"
""")
    server = Server(config).start()
    try:
        slow_clients(server)
    finally:
        server.stop()


def slow_clients(server: Server) -> None:
    pid = server.process.pid
    before = rss_kb(pid)
    head = (f"POST {PRED} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000000\r\n\r\n").encode()
    kinds = ["trickle"] * 150 + ["silent"] * 75 + ["partial"] * 75
    selector = selectors.DefaultSelector()
    started: dict[socket.socket, float] = {}
    resolved: dict[str, list[float]] = {k: [] for k in set(kinds)}
    chunk = b"[" + b" " * (256 * 1024 - 1)
    for kind in kinds:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            if kind == "partial":
                sock.send(f"POST {PRED} HTTP/1.1\r\nHost: x\r\nContent-Le".encode())
            else:
                sock.send(head + (chunk if kind == "trickle" else b""))
        started[sock] = time.monotonic()
        selector.register(sock, selectors.EVENT_READ, kind)

    probes: list[float] = []
    peak = [before]
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                t = time.perf_counter()
                ok = client.get(f"{server.url}/healthz").status_code == 200
                probes.append(time.perf_counter() - t if ok else math.inf)
                peak[0] = max(peak[0], rss_kb(pid))
                time.sleep(0.1)

    prober = threading.Thread(target=probe)
    prober.start()
    deadline = time.monotonic() + 8.0
    last_trickle = time.monotonic()
    try:
        while selector.get_map() and time.monotonic() < deadline:
            for key_, _ in selector.select(timeout=0.2):
                sock: socket.socket = key_.fileobj
                with contextlib.suppress(OSError):
                    sock.recv(65536)  # an answer, or the end of the connection
                resolved[key_.data].append(time.monotonic() - started[sock])
                selector.unregister(sock)
                sock.close()
            if time.monotonic() - last_trickle > 1.0:
                last_trickle = time.monotonic()
                for key_ in list(selector.get_map().values()):
                    if key_.data == "trickle":
                        with contextlib.suppress(OSError):
                            key_.fileobj.send(b" ")
    finally:
        stop.set()
        prober.join()
        hanging = len(selector.get_map())
        for key_ in list(selector.get_map().values()):
            key_.fileobj.close()
        selector.close()
    slowest = {k: round(max(v, default=0.0), 2) for k, v in resolved.items()}
    growth_mb = (peak[0] - before) / 1024
    seen = f"slowest answer or drop per kind {slowest}, RSS +{growth_mb:.0f} MB, " \
           f"/healthz up to {max(probes, default=0) * 1000:.0f} ms"
    assert hanging == 0, f"{hanging} connections still open after 8 s; {seen}"
    # The bound: answered or dropped within 5 s (the header deadline is 4 s).
    assert max(slowest.values()) <= 5.0, f"slowest answer or drop per kind: {slowest}"
    assert probes and max(probes) < 0.5, f"/healthz took up to {max(probes):.3f} s"
    assert growth_mb < 30, seen
    print(f"300 slow clients: {seen}")  # the figures, for the notes (pytest -rP)
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


# --------------------------------------------------------------------------- stalls
class HealthProbe:
    """/healthz latencies on one connection opened beforehand, so that what is measured is
    the server, not a handshake; a call that fails or times out counts as a failure."""

    def __init__(self, url: str) -> None:
        self.url = f"{url}/healthz"
        self.client = httpx.Client(timeout=5)
        assert self.client.get(self.url).status_code == 200

    def run(self, seconds: float) -> tuple[list[float], list[str]]:
        times: list[float] = []
        failures: list[str] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            try:
                status = self.client.get(self.url).status_code
                if status != 200:
                    failures.append(f"status {status}")
            except httpx.HTTPError as error:
                failures.append(f"{type(error).__name__} after "
                                f"{time.perf_counter() - started:.1f} s")
            times.append(time.perf_counter() - started)
            time.sleep(0.05)
        self.client.close()
        return times, failures


def in_thread(call: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``call`` in a thread; the returned function joins it and gives its result."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except Exception as error:  # reported by the joiner
            box["error"] = error

    thread = threading.Thread(target=run)
    thread.start()

    def join(timeout: float = 120) -> Any:
        thread.join(timeout)
        assert not thread.is_alive(), "the call never returned"
        if "error" in box:
            raise box["error"]
        return box["value"]

    return join


def test_healthz_stays_quick_during_a_5_second_model_call(tmp_path, artifacts, monkeypatch):
    mark = tmp_path / "sleeping"
    monkeypatch.setenv("BANDITOPS_TEST_SLEEP_MARK", str(mark))
    joblib.dump(SleepsOnSignal(), tmp_path / "sleepy.joblib")
    config = write_config(tmp_path, tmp_path, """
[deployments.main]
policy = "thompson"
features = FEATURES
[[deployments.main.versions]]
name = "sleepy"
artifact = "TMP/sleepy.joblib"
""".replace("TMP", str(tmp_path)), allow_pickle=True, extra="model_timeout_ms = 10000")
    server = Server(config).start()
    try:
        slow = {**ONE, "x0": SLEEP_SIGNAL}
        probe = HealthProbe(server.url)
        done = in_thread(lambda: httpx.post(f"{server.url}{PRED}", json={"features": slow},
                                            headers=auth(CLIENT_KEY), timeout=60))
        deadline = time.monotonic() + 30
        while not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert mark.exists(), "the slow model call never started"
        times, failures = probe.run(3.0)
        answer = done()
        assert answer.status_code in (200, 503), answer.text
        assert not failures, f"/healthz failed during the model call: {failures[:3]}"
        assert max(times) < 0.1, f"/healthz took up to {max(times) * 1000:.0f} ms " \
                                 f"({len(times)} calls) during the model call"
        print(f"/healthz during a 5 s model call: max {max(times) * 1000:.1f} ms over "
              f"{len(times)} calls")
        assert httpx.post(f"{server.url}{PRED}", json={"features": ONE}, timeout=30,
                          headers=auth(CLIENT_KEY)).status_code == 200
    finally:
        server.stop()


def through(url: str, port: int) -> str:
    """The database URL with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


def test_healthz_stays_quick_while_the_database_stalls(tmp_path, artifacts, postgres_url):
    target = urlsplit(postgres_url)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        config = write_config(tmp_path, artifacts, f"""
[deployments.main]
policy = "thompson"
features = FEATURES
[[deployments.main.versions]]
name = "good"
artifact = "{artifacts}/good.skops"
""")
        server = Server(config, db=through(postgres_url, proxy.port)).start()
        try:
            key = auth(CLIENT_KEY)
            assert httpx.post(f"{server.url}{PRED}", json={"features": ONE}, headers=key,
                              timeout=30).status_code == 200
            probe = HealthProbe(server.url)
            proxy.stall()
            stalled_at = time.monotonic()
            done = in_thread(lambda: httpx.post(f"{server.url}{PRED}", json={"features": ONE},
                                                headers=key, timeout=90))
            times, failures = probe.run(4.0)
            ready = in_thread(lambda: httpx.get(f"{server.url}/readyz", timeout=60))
            # hold the stall 8 s in all, then let the database answer again
            time.sleep(max(0.0, 8.0 - (time.monotonic() - stalled_at)))
            proxy.resume()
            answer = done()
            assert answer.status_code in (200, 503), \
                f"predict during the stall: {answer.status_code} {answer.text[:300]}"
            if answer.status_code == 503:
                assert "retry-after" in answer.headers, answer.headers
                assert not TRACEBACK.search(answer.text)
            assert not failures, f"/healthz failed during the stall: {failures[:3]}"
            assert max(times) < 0.1, f"/healthz took up to {max(times) * 1000:.0f} ms " \
                                     f"({len(times)} calls) during the stall"
            print(f"/healthz during the database stall: max {max(times) * 1000:.1f} ms over "
                  f"{len(times)} calls; predict answered {answer.status_code}")
            readiness = ready()
            assert readiness.status_code in (200, 503), readiness.text
            assert not TRACEBACK.search(readiness.text)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the server recovers
                with contextlib.suppress(httpx.HTTPError):
                    again = httpx.post(f"{server.url}{PRED}", json={"features": ONE},
                                       headers=key, timeout=10)
                    assert again.status_code < 500 or again.status_code == 503, again.text
                    if again.status_code == 200:
                        break
                time.sleep(0.2)
            else:
                raise AssertionError("predict did not recover within 60 s of the resume")
            assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 200
        finally:
            proxy.resume()
            server.stop()


# --------------------------------------------------------------------------- one SQLite owner
def test_a_second_process_on_the_same_sqlite_file_refuses_to_start(tmp_path, artifacts):
    config = write_config(tmp_path, artifacts, f"""
[deployments.main]
policy = "thompson"
features = FEATURES
[[deployments.main.versions]]
name = "good"
artifact = "{artifacts}/good.skops"
""")
    first = Server(config).start()
    try:
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
        port = free_port()
        log = tmp_path / "second.log"
        second = subprocess.Popen(
            [sys.executable, "-m", "banditops.cli", "serve", "--config", str(config),
             "--port", str(port)], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            serving = False
            while second.poll() is None and time.monotonic() < deadline and not serving:
                with contextlib.suppress(httpx.HTTPError):
                    serving = httpx.get(f"http://127.0.0.1:{port}/readyz",
                                        timeout=1).status_code == 200
                time.sleep(0.1)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
        output = log.read_text().strip()
        assert not serving, f"the second process serves the same file: {output[-1000:]}"
        assert second.returncode != 0, f"the second process did not refuse: {output[-1000:]}"
        assert "Traceback" not in output, output[-2000:]
        lines = [line for line in output.splitlines() if line.strip()]
        assert len(lines) == 1, f"not one line: {output[-1000:]}"
        assert "service.db" in lines[0], f"the message does not name the file: {lines[0]}"
        assert httpx.post(f"{first.url}{PRED}", json={"features": ONE},
                          headers=auth(CLIENT_KEY), timeout=30).status_code == 200
        assert first.process.poll() is None
    finally:
        first.stop()


def test_feedback_with_another_key_is_refused_when_the_deployment_says_so(labelled_server):
    url = labelled_server.url
    decision_id, label = open_decision(url, "owned")
    forged = httpx.post(f"{url}{P}/owned/feedback", headers=auth(OTHER_CLIENT_KEY), timeout=30,
                        json={"decision_id": decision_id, "label": label})
    check_answer(forged.status_code, forged.content, forged.headers.get("content-type", ""),
                 {403, 404}, "decision|key")
    mine = httpx.post(f"{url}{P}/owned/feedback", headers=auth(CLIENT_KEY), timeout=30,
                      json={"decision_id": decision_id, "label": label})
    assert mine.status_code == 200, mine.text
