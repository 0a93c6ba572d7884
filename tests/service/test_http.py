"""The HTTP layer of a real server process: nothing slow on the event loop, limits before
bodies, keys from the headers, every bad input a 4xx, reinstate, bounded metric labels,
and ``serve`` start-up errors as one line."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import joblib
import pytest

from banditops.client import Client, ServiceError
from tests.service.conftest import (
    ADMIN_KEY,
    CLIENT_KEY,
    REPO,
    Server,
    free_port,
    headers,
    write_config,
)
from tests.service.http_models import Sleepy
from tests.service.models import as_features, make_rows

DEPLOYMENTS = """
[deployments.main]
policy = "thompson"
policy_params = { seed = 1 }
features = FEATURES
[[deployments.main.versions]]
name = "v1"
artifact = "ARTIFACTS/good.skops"
[[deployments.main.versions]]
name = "v2"
artifact = "ARTIFACTS/good2.skops"

[deployments.sleepy]
policy = "thompson"
features = FEATURES
[[deployments.sleepy.versions]]
name = "slow"
artifact = "SLEEPY"
"""
X, Y = make_rows(50, seed=7)
ONE = as_features(X[0])
SLEEP = {"x0": 5.0, "x1": 0.0, "x2": 0.0, "x3": 0.0}  # Sleepy sleeps x0 seconds
FAST = {"x0": 0.0, "x1": 0.0, "x2": 0.0, "x3": 0.0}


@pytest.fixture(scope="module")
def server(tmp_path_factory, artifacts):
    folder = tmp_path_factory.mktemp("http")
    joblib.dump(Sleepy(), artifacts / "sleepy.joblib")
    config = write_config(
        folder, artifacts, DEPLOYMENTS.replace("ARTIFACTS", str(artifacts))
        .replace("SLEEPY", str(artifacts / "sleepy.joblib")), allow_pickle=True,
        extra="max_batch = 10\nmax_body_bytes = 4096\nmodel_timeout_ms = 20000\n"
              "max_queue = 2\nbody_timeout_seconds = 1")
    os.environ["SLEEPY_MARK"] = str(folder / "sleeping")  # inherited by the server
    running = Server(config).start()
    yield running
    running.stop()


def raw_request(server: Server, data: bytes, *, body_chunks: list[bytes] = (),
                timeout: float = 5.0) -> tuple[bytes, float]:
    """Send ``data`` (and chunks while the server lets us), read the answer; (bytes, s)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed: what we test
                break
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return answer, time.monotonic() - started


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_healthz_answers_fast_while_a_model_sleeps_and_a_full_queue_is_503(server):
    slow: dict[str, object] = {}

    def call_the_slow_model() -> None:
        started = time.monotonic()
        slow["response"] = httpx.post(f"{server.url}/v1/deployments/sleepy/predict",
                                      json={"features": SLEEP}, headers=headers(), timeout=60)
        slow["seconds"] = time.monotonic() - started

    mark = Path(os.environ["SLEEPY_MARK"])
    mark.unlink(missing_ok=True)
    thread = threading.Thread(target=call_the_slow_model)
    thread.start()
    latencies = []
    deadline = time.monotonic() + 60  # until the slow call is under way in the worker
    while not mark.exists():
        assert time.monotonic() < deadline and thread.is_alive(), "the slow call never started"
        time.sleep(0.01)
    overloaded = []
    with httpx.Client(timeout=30) as http:
        queued = [threading.Thread(target=lambda: overloaded.append(http.post(
            f"{server.url}/v1/deployments/sleepy/predict", json={"features": FAST},
            headers=headers()))) for _ in range(5)]
        for waiting in queued:
            waiting.start()
        while thread.is_alive():
            started = time.perf_counter()
            assert http.get(f"{server.url}/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
        for waiting in queued:
            waiting.join(30)
    assert slow["seconds"] >= 4.5, slow  # the model really was sleeping meanwhile
    assert slow["response"].status_code == 200
    # a blocked loop would hold /healthz for the model's 5 s; 1 s is generous for a busy box
    assert len(latencies) >= 10 and max(latencies) < 1.0, latencies
    statuses = sorted(r.status_code for r in overloaded)
    assert statuses.count(503) >= 3 and set(statuses) <= {200, 503}, statuses  # 2 may wait
    busy = next(r for r in overloaded if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "retry later" in busy.json()["detail"]
    # and the main deployment was never held up by the sleepy one
    assert httpx.post(f"{server.url}/v1/deployments/main/predict", json={"features": ONE},
                      headers=headers()).status_code == 200


def test_reinstate_through_the_api_and_the_client(server):
    with Client(server.url, ADMIN_KEY) as admin:
        assert admin.rollback("main", "v2", reason="canary looked bad") == {
            "name": "v2", "status": "rolled_back"}
        assert all(admin.predict("main", ONE)["version"] == "v1" for _ in range(10))
        assert admin.reinstate("main", "v2", reason="false alarm") == {
            "name": "v2", "status": "live"}
        status = {v["name"]: v["status"] for v in admin.deployment("main")["versions"]}
        assert status == {"v1": "live", "v2": "live"}
        kinds = [(e["kind"], e["version"], e["reason"]) for e in admin.events("main")]
        assert ("reinstated", "v2", "false alarm") in kinds
        with pytest.raises(ServiceError) as live:
            admin.reinstate("main", "v2")
        assert live.value.status == 409
        with pytest.raises(ServiceError) as unknown:
            admin.reinstate("main", "v9")
        assert unknown.value.status == 404
    response = httpx.post(f"{server.url}/v1/deployments/main/versions/v2/reinstate",
                          headers=headers(CLIENT_KEY))
    assert response.status_code == 403
    response = httpx.post(f"{server.url}/v1/deployments/main/versions/v1/rollback",
                          headers=headers(ADMIN_KEY), json={"reason": "x" * 501})
    assert response.status_code == 422 and "reason" in response.json()["detail"]
    log = server.log.read_text()
    assert 'deployment=main version=v2 kind=rolled_back reason="canary looked bad"' in log
    assert 'kind=reinstated reason="false alarm"' in log
    # one access line per request, naming the route template, not the path
    assert re.search(r"banditops.access: request method=POST route=/v1/deployments/\{name\}/"
                     r"versions/\{version\}/rollback status=200 ms=[0-9.]+ "
                     r"deployment=main version=v2\b", log)
    assert re.search(r"route=/v1/deployments/\{name\}/predict status=200 ms=[0-9.]+ "
                     r"deployment=main version=v[12] decision_id=[0-9a-f]{32}", log)


def test_logs_as_json_one_object_per_line(tmp_path, artifacts):
    main = DEPLOYMENTS.split("[deployments.sleepy]")[0]
    config = write_config(tmp_path, artifacts, main.replace("ARTIFACTS", str(artifacts)))
    server = Server(config, args=("--log-format", "json")).start()
    try:
        with Client(server.url, ADMIN_KEY) as admin:
            decision = admin.predict("main", ONE)
            admin.rollback("main", "v2", reason="canary looked bad")
            with pytest.raises(ServiceError):
                admin.deployment("nowhere")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the last access line is written after the answer
            lines = [json.loads(line) for line in server.log.read_text().splitlines()
                     if line.startswith("{")]
            if any(x.get("status") == 404 for x in lines):
                break
            time.sleep(0.1)
    finally:
        server.stop()
    access = [x for x in lines if x["logger"] == "banditops.access"]
    predict = next(x for x in access if x["route"].endswith("/predict"))
    assert predict["status"] == 200 and predict["deployment"] == "main"
    assert (predict["version"], predict["decision_id"]) == (decision["version"],
                                                           decision["decision_id"])
    assert predict["ms"] > 0 and predict["level"] == "info" and predict["time"].endswith("Z")
    assert any(x["status"] == 404 and x["deployment"] == "nowhere" for x in access)
    rollback = next(x for x in lines if x.get("kind") == "rolled_back")
    assert rollback == {**rollback, "level": "warning", "deployment": "main", "version": "v2",
                        "reason": "canary looked bad"}


def test_serve_refuses_a_bad_log_option_in_one_line(tmp_path, artifacts):
    main = DEPLOYMENTS.split("[deployments.sleepy]")[0]
    config = write_config(tmp_path, artifacts, main.replace("ARTIFACTS", str(artifacts)))
    result = _serve(["--config", str(config), "--log-format", "xml"], {}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --log-format must be one of text, json, got 'xml'"]


def test_keys_are_checked_from_the_headers(server):
    path = b"/v1/deployments/main"
    for key in (b"\xff\xfe-not-ascii-0123456789", "clé-0123456789abcdef".encode(),
                b"tab\tinside-0123456789", b"k" * 600):
        answer, _ = raw_request(server, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                b"Authorization: Bearer " + key + b"\r\n\r\n")
        assert status_of(answer) == 401, (key, answer)
        assert b"malformed API key" in answer
    # control characters: refused by the HTTP parser (400) or by the key check (401)
    for key in (b"\x01\x02-0123456789abcdef", b"\x7f" * 20):
        answer, _ = raw_request(server, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                b"Authorization: Bearer " + key + b"\r\n\r\n")
        assert status_of(answer) in (400, 401), answer
    assert httpx.get(server.url + path.decode(), headers={"X-API-Key": CLIENT_KEY}
                     ).status_code == 200


def test_a_bad_key_with_a_huge_chunked_body_is_401_before_the_body(server):
    start = (b"POST /v1/deployments/main/predict HTTP/1.1\r\nHost: x\r\n"
             b"Authorization: Bearer wrong-key-0123456789\r\n"
             b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"[" * 65536)
    answer, seconds = raw_request(server, start, body_chunks=[chunk] * 2000)  # 131 MB
    assert status_of(answer) == 401 and seconds < 5, (answer, seconds)
    # a good key, the same body: 413 once past the limit, not buffered to the end
    answer, seconds = raw_request(server, start.replace(b"wrong-key", b"client-key"),
                                  body_chunks=[chunk] * 2000)
    assert status_of(answer) == 413 and seconds < 5, (answer, seconds)


def test_a_declared_oversize_body_is_413_before_it_is_sent(server):
    answer, seconds = raw_request(
        server, b"POST /v1/deployments/main/predict HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n")
    assert status_of(answer) == 413 and b"4,096-byte limit" in answer and seconds < 5
    assert b"connection: close" in answer.lower()


def test_a_body_that_does_not_arrive_is_408(server):
    answer, seconds = raw_request(
        server, b"POST /v1/deployments/main/predict HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"feat", timeout=10)
    assert status_of(answer) == 408 and 0.9 < seconds < 5, (answer, seconds)


def test_a_connection_that_trickles_its_headers_is_closed(server):
    for start in (b"", b"GET /healthz HTTP/1.1\r\nHo"):
        answer, seconds = raw_request(server, start, timeout=10)
        assert answer == b"" and 0.9 < seconds < 5, (answer, seconds)
    # a keep-alive connection still serves its next request within the deadline
    with httpx.Client() as http:
        for _ in range(3):
            assert http.get(f"{server.url}/healthz").status_code == 200
            time.sleep(0.3)


DEEP = "[" * 1000 + "]" * 1000
HOSTILE = [
    # (method, path, raw body, status, message fragment)
    ("POST", "main/predict", '{"features": ' + DEEP + "}", 400, "nested deeper than 64"),
    ("POST", "main/feedback", '{"decision_id": "a", "label": ' + "[" * 70 + "]" * 70 + "}",
     400, "nested deeper than 64"),
    ("POST", "main/predict", '{"features": {"x0": ' + "9" * 400 + ', "x1": 0, "x2": 0, "x3": 0}}',
     400, "at most 64-bit integers"),
    ("POST", "main/predict", '{"features": {"x0": 1e999, "x1": 0, "x2": 0, "x3": 0}}', 400,
     "too large"),
    ("POST", "main/predict", '{"features": {"x0": -Infinity, "x1": 0, "x2": 0, "x3": 0}}', 400,
     "-Infinity is not a JSON number"),
    ("POST", "main/feedback", '{"decision_id": "a", "label": NaN}', 400, "NaN"),
    ("POST", "main/feedback", '{"decision_id": "a\\u0000b", "label": 1}', 400, "NUL"),
    ("POST", "main/predict", '{"features": {"x\\u0000": 1}}', 400, "NUL"),
    ("POST", "main/feedback", '{"decision_id": "a", "label": "' + "y" * 300 + '"}', 422,
     "label: at most 200 characters"),
    ("POST", "main/feedback", '{"decision_id": "a", "label": [1]}', 422,
     "label: expected a class label"),
    ("POST", "main/feedback", '[{"decision_id": "a", "label": 1}, {"label": 1}]', 422,
     "[1].decision_id: Field required"),
    ("POST", "main/feedback", '"just a string"', 422, "Input should be a valid dictionary"),
    ("POST", "main/predict", b'{"features": "\xff"}', 400, "not UTF-8"),
    ("POST", "main/predict", "", 400, "malformed JSON"),
    ("GET", f"main/events?since={2**64}", None, 422, "since: Input should be less than"),
    ("GET", "main/events?since=-1", None, 422, "since: Input should be greater than"),
    ("GET", "main/events?since=1.5", None, 422, "since: Input should be a valid integer"),
    ("GET", "main/events?limit=1001", None, 422, "limit: Input should be less than"),
    ("GET", "main/events?limit=" + "9" * 5000, None, 422, "limit:"),
    ("GET", "nope/events", None, 404, "unknown deployment 'nope'"),
    ("POST", "main/versions/v%00/rollback", "{}", 404, "unknown version"),
    ("DELETE", "main/versions/" + "v" * 300, None, 404, "unknown version"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), HOSTILE,
                         ids=[f"{i}-{r[3]}" for i, r in enumerate(HOSTILE)])
def test_hostile_inputs_get_a_4xx_naming_the_problem(server, method, path, body, status,
                                                     message):
    key = ADMIN_KEY if "versions" in path else CLIENT_KEY
    response = httpx.request(method, f"{server.url}/v1/deployments/{path}", content=body,
                             headers={**headers(key), "content-type": "application/json"})
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_unknown_routes_and_methods_and_bounded_metric_labels(server):
    assert httpx.get(f"{server.url}/no/such/route").status_code == 404
    response = httpx.put(f"{server.url}/v1/deployments/main/predict", headers=headers())
    assert response.status_code == 405 and "use POST" in response.json()["detail"]
    assert httpx.request("PATCH", f"{server.url}/x{time.time()}").status_code == 404
    assert httpx.request("PATCH", f"{server.url}/healthz").status_code == 405
    assert httpx.head(f"{server.url}/openapi.json").status_code == 200  # no key needed
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'banditops_http_requests_total{method="other",route="unmatched",status="404"}' \
        in metrics
    assert 'banditops_http_requests_total{method="other",route="unmatched",status="405"}' \
        in metrics
    assert 'method="PATCH"' not in metrics and 'method="PUT"' not in metrics
    assert 'route="/no/such/route"' not in metrics
    assert 'banditops_queued_jobs{deployment="sleepy"}' in metrics
    docs = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/deployments/{name}/versions/{version}/reinstate" in docs["paths"]


def test_the_client_splits_lists_over_max_batch(server):
    with Client(server.url, CLIENT_KEY, max_batch=10) as client:
        decisions = client.predict_many("main", [as_features(x) for x in X[:25]])
        assert len(decisions) == 25 and len({d["decision_id"] for d in decisions}) == 25
        results = client.feedback_many("main", [(d["decision_id"], int(y))
                                                for d, y in zip(decisions, Y[:25], strict=True)])
    assert [r["status"] for r in results] == ["recorded"] * 25


def _serve(args: list[str], env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "banditops.cli", "serve", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
                               **env},
                          capture_output=True, text=True, timeout=120)


def test_serve_refuses_a_busy_port_and_a_short_demo_key_in_one_line(tmp_path, artifacts):
    config = write_config(tmp_path, artifacts, DEPLOYMENTS.split("[deployments.sleepy]")[0]
                          .replace("ARTIFACTS", str(artifacts)))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _serve(["--config", str(config), "--port", str(port)], {}, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()  # errors go to stderr, one line
    assert lines == [f"error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert result.stdout == ""
    result = _serve(["--port", str(free_port())], {"BANDITOPS_API_KEY": "short"}, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [(
        "error: environment variable BANDITOPS_API_KEY must hold an API key of at least 16 "
        "characters")]
    secret = "postgresql+psycopg://user:hunter2secret@127.0.0.1:1/nodb"
    result = _serve(["--config", str(config), "--port", str(free_port()), "--db", secret],
                    {}, tmp_path)
    assert result.returncode == 2 and "hunter2secret" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in result.stderr


# ------------------------------------------- big bodies, huge headers, HEAD, duplicate keys
@pytest.fixture(scope="module")
def roomy(tmp_path_factory, artifacts):
    """The main deployment with the default 1 MB body limit."""
    folder = tmp_path_factory.mktemp("roomy")
    config = write_config(folder, artifacts, DEPLOYMENTS.split("[deployments.sleepy]")[0]
                          .replace("ARTIFACTS", str(artifacts)))
    running = Server(config).start()
    yield running
    running.stop()


def sample_healthz(server: Server, busy: list[threading.Thread]) -> list[float]:
    """/healthz latencies (s) measured one after another until every ``busy`` thread ends."""
    latencies = []
    with httpx.Client(timeout=30) as http:
        while any(thread.is_alive() for thread in busy) or len(latencies) < 5:
            started = time.perf_counter()
            assert http.get(f"{server.url}/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
    return latencies


def rss_bytes(server: Server) -> int:
    status = open(f"/proc/{server.process.pid}/status").read()  # noqa: SIM115
    return int(status.split("VmRSS:")[1].split()[0]) * 1024


def test_big_json_bodies_are_parsed_off_the_event_loop_and_bounded(roomy):
    body = ("[" + ",".join(["[]"] * 330_000) + "]").encode()  # 990 KB, 330,001 values
    assert 900_000 < len(body) < 1_000_000
    answers: list[httpx.Response] = []

    def post_big_bodies() -> None:
        with httpx.Client(timeout=60, headers={**headers(),
                                               "content-type": "application/json"}) as http:
            for _ in range(20):
                answers.append(http.post(f"{roomy.url}/v1/deployments/main/predict",
                                         content=body))

    poster = threading.Thread(target=post_big_bodies)
    poster.start()
    latencies = sample_healthz(roomy, [poster])
    poster.join()
    assert [a.status_code for a in answers] == [413] * 20
    assert "more than 100,000 values" in answers[0].json()["detail"]
    # Off the loop, /healthz answers between parses (~0.04 s here); 0.5 s leaves room for a
    # busy 2-core machine (0.117 s was seen once) and still catches a loop blocked by parses.
    assert max(latencies) < 0.5, sorted(latencies)[-5:]
    # a big body under the value limit is still parsed (in a thread) and answered
    big = {"instances": [dict(ONE, pad="x" * 600) for _ in range(200)]}  # ~130 KB
    response = httpx.post(f"{roomy.url}/v1/deployments/main/predict", json=big,
                          headers=headers())
    assert response.status_code == 422 and "unknown feature(s) ['pad']" in response.text
    response = httpx.post(f"{roomy.url}/v1/deployments/main/predict",
                          json={"instances": [ONE] * 200}, headers=headers())
    assert response.status_code == 200 and len(response.json()["decisions"]) == 200


def send_huge_header(server: Server, total: int, sent: list[int]) -> None:
    """A GET /healthz whose X-Big header is ``total`` bytes; records the bytes sent."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)  # no big buffers to fill
        sock.settimeout(30)
        sock.connect(("127.0.0.1", server.port))
        count = 0
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            chunk = b"a" * 16384
            while count < total:
                sock.sendall(chunk)
                count += len(chunk)
        except OSError:  # the server closed the connection: what we test
            pass
        sent.append(count)


def test_huge_headers_close_the_connection_and_cost_no_memory(roomy):
    before = rss_bytes(roomy)
    sent: list[int] = []
    senders = [threading.Thread(target=send_huge_header, args=(roomy, 10_000_000, sent))
               for _ in range(4)]
    for sender in senders:
        sender.start()
    latencies = sample_healthz(roomy, senders)
    for sender in senders:
        sender.join(60)
    assert len(sent) == 4 and max(sent) < 4_000_000, sent  # cut off well before 10 MB
    assert rss_bytes(roomy) - before < 30_000_000, (before, rss_bytes(roomy))
    assert max(latencies) < 0.5, sorted(latencies)[-5:]  # generous for 2 busy cores
    # the 431 answer, when the client reads it before the reset (the limit is checked after
    # each read of at most 256 KiB: 400 KB is past it whatever the reads); headers under the
    # limit still pass
    answer, _ = raw_request(roomy, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ",
                            body_chunks=[b"a" * 16384] * 25 + [b"\r\n\r\n"])
    assert answer == b"" or status_of(answer) == 431, answer[:200]
    with httpx.Client() as http:  # keep-alive: each request's headers counted afresh
        for _ in range(3):
            assert http.get(f"{roomy.url}/healthz", headers={"X-Pad": "p" * 40_000}
                            ).status_code == 200


def test_head_works_where_get_does(server):
    for path in ("/healthz", "/readyz", "/metrics"):
        response = httpx.head(f"{server.url}{path}")
        assert response.status_code == 200 and response.content == b"", path
        assert int(response.headers["content-length"]) > 0, path
    assert httpx.head(f"{server.url}/v1/deployments/main", headers=headers()
                      ).status_code == 200
    assert httpx.head(f"{server.url}/v1/deployments/main").status_code == 401
    response = httpx.head(f"{server.url}/v1/deployments/main/predict", headers=headers())
    assert response.status_code == 405 and response.headers["connection"] == "close"


def test_more_than_one_api_key_header_is_401(server):
    path = b"GET /v1/deployments/main HTTP/1.1\r\nHost: x\r\n"
    bearer = b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n"
    for extra in (bearer + bearer, bearer + b"Authorization: Bearer wrong-key-0123456789\r\n",
                  bearer + b"X-API-Key: " + CLIENT_KEY.encode() + b"\r\n",
                  b"X-API-Key: a-key-0123456789abcdef\r\nX-API-Key: " + CLIENT_KEY.encode() +
                  b"\r\n"):
        answer, _ = raw_request(server, path + extra + b"Connection: close\r\n\r\n")
        assert status_of(answer) == 401 and b"more than one API key header" in answer, answer
    answer, _ = raw_request(server, path + bearer + b"Connection: close\r\n\r\n")
    assert status_of(answer) == 200
