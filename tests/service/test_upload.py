"""Versions uploaded to a real server (POST .../versions/upload, multipart): they serve
traffic, their sha256 is answered and recorded, the body limits hold before and while it is
read, every artifact check applies, and the bytes live in the database: a restart and a
second server on the same PostgreSQL load the version with no shared disk."""

from __future__ import annotations

import hashlib
import shutil
import socket
import time
from pathlib import Path

import httpx
import pytest
from sklearn.linear_model import LogisticRegression

from banditops.client import Client, ServiceError
from banditops.service.endpoints import MAX_UPLOADS
from tests.service.conftest import ADMIN_KEY, CLIENT_KEY, Server, headers, write_config
from tests.service.models import as_features, make_rows
from tests.service.test_http import raw_request, status_of
from tests.test_artifacts import add_attribute, reduce_call, rewrite

LIMIT = 300_000  # max_upload_bytes of these servers
DEPLOYMENT = """
[deployments.main]
policy = "thompson"
policy_params = { seed = 4 }
features = FEATURES
guardrail = false
[[deployments.main.versions]]
name = "v1"
artifact = "ARTIFACTS/good.skops"
"""
X, Y = make_rows(400, seed=11)
UPLOAD = "/v1/deployments/main/versions/upload"


def config_for(folder: Path, artifacts: Path) -> Path:
    return write_config(folder, artifacts, DEPLOYMENT.replace("ARTIFACTS", str(artifacts)),
                        extra=f"max_upload_bytes = {LIMIT}\nmax_body_bytes = 4096")


@pytest.fixture(scope="module")
def server(tmp_path_factory, artifacts):
    running = Server(config_for(tmp_path_factory.mktemp("upload"), artifacts)).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(server):
    with Client(server.url, ADMIN_KEY, timeout=120) as client:  # a registration checks the
        yield client  # model in a child process: seconds on a busy machine


def upload(server, files, data=None, *, key=ADMIN_KEY, deployment="main") -> httpx.Response:
    return httpx.post(f"{server.url}/v1/deployments/{deployment}/versions/upload",
                      files=files, data=data or {}, headers=headers(key), timeout=120)


def served_by(url: str, count: int = 200) -> dict[str, list[bool]]:
    """version -> whether each of its predictions was right, over ``count`` requests."""
    served: dict[str, list[bool]] = {}
    with Client(url, CLIENT_KEY) as client:
        for x, y in zip(X[:count], Y[:count], strict=True):
            decision = client.predict("main", as_features(x))
            served.setdefault(decision["version"], []).append(decision["prediction"] == y)
    return served


def test_uploaded_skops_and_onnx_versions_serve_traffic(server, admin, artifacts):
    answer = admin.upload("main", "up-skops", artifacts / "good.skops", validation_score=0.9)
    expected = hashlib.sha256((artifacts / "good.skops").read_bytes()).hexdigest()
    assert answer["sha256"] == expected and answer["status"] == "live"
    assert answer["artifact"] == f"upload:{expected}.skops"
    assert answer["size"] == (artifacts / "good.skops").stat().st_size
    onnx = (artifacts / "good.onnx").read_bytes()
    response = upload(server, {"artifact": ("model.onnx", onnx, "application/octet-stream")},
                      {"version": "up-onnx"})
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == hashlib.sha256(onnx).hexdigest()

    again = admin.register("main", "up-again", f"upload:{expected}.skops")  # same bytes
    assert again["sha256"] == expected
    admin.retire("main", "up-again")
    with pytest.raises(ServiceError, match="no uploaded artifact with this sha256"):
        admin.register("main", "up-never", f"upload:{'0' * 64}.skops")
    admin.retire("main", "v1")  # every answer now comes from an uploaded version
    served = served_by(server.url)
    assert set(served) == {"up-skops", "up-onnx"}
    assert all(sum(right) / len(right) > 0.9 for right in served.values())
    registered = {e["version"]: e["evidence"] for e in admin.events("main")
                  if e["kind"] == "registered"}
    assert registered["up-skops"]["sha256"] == expected
    assert registered["up-skops"]["source"] == "upload"
    assert registered["up-onnx"]["sha256"] == hashlib.sha256(onnx).hexdigest()
    versions = {v["name"]: v for v in admin.deployment("main")["versions"]}
    assert versions["up-skops"]["validation_score"] == 0.9


def test_an_oversize_upload_is_413_declared_or_streamed(server):
    head = (b"POST " + UPLOAD.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + ADMIN_KEY.encode() + b"\r\n"
            b"Content-Type: multipart/form-data; boundary=XyZ\r\n")
    answer, seconds = raw_request(server, head + b"Content-Length: 1000000000\r\n\r\n")
    assert status_of(answer) == 413 and seconds < 5, (answer, seconds)
    assert b"300,000-byte limit (max_upload_bytes)" in answer
    assert b"connection: close" in answer.lower()
    # no length declared: refused once past the limit, long before the 130 MB are sent
    part = (b"--XyZ\r\nContent-Disposition: form-data; name=\"artifact\"; "
            b"filename=\"big.onnx\"\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"\0" * 65536)
    start = b"%x\r\n%s\r\n" % (len(part), part)
    answer, seconds = raw_request(server, head + b"Transfer-Encoding: chunked\r\n\r\n" + start,
                                  body_chunks=[chunk] * 2000)
    assert status_of(answer) == 413 and seconds < 10, (answer[:300], seconds)
    assert b"upload over the 300,000-byte limit" in answer


def test_the_body_limit_of_other_routes_is_unchanged(server):
    big = {"artifact": ("m.skops", b"x" * 10_000)}
    response = httpx.post(f"{server.url}/v1/deployments/main/versions", files=big,
                          headers=headers(ADMIN_KEY), timeout=10)
    assert response.status_code == 415  # JSON routes still take JSON only


@pytest.mark.parametrize("files, data, key, status, message", [
    (None, None, CLIENT_KEY, 403, "needs admin"),
    ({"artifact": ("m.txt", b"hello")}, {"version": "x1"}, ADMIN_KEY, 422, "unknown format"),
    ({"artifact": ("m.joblib", b"not read")}, {"version": "x2"}, ADMIN_KEY, 422,
     "set allow_pickle = true"),
    ({"artifact": ("m.skops", b"not a zip")}, None, ADMIN_KEY, 422,
     "missing form field(s) ['version']"),
    (None, {"version": "x3"}, ADMIN_KEY, 422, "missing form field(s) ['artifact']"),
    ({"artifact": ("m.skops", b"not a zip")}, {"version": "x 4"}, ADMIN_KEY, 422, "version:"),
    ({"artifact": ("m.skops", b"not a zip")}, {"version": "x5", "validation_score": "2"},
     ADMIN_KEY, 422, "validation_score: expected a number from 0 to 1"),
    ({"artifact": ("m.skops", b"not a zip")}, {"version": "x6", "color": "red"}, ADMIN_KEY,
     422, "unknown form field 'color'"),
    # named by the client's filename, not only by the sha256 its copy here is named after
    ({"artifact": ("m.skops", b"not a zip")}, {"version": "x7"}, ADMIN_KEY, 422,
     f"artifact m.skops (sha256 {hashlib.sha256(b'not a zip').hexdigest()[:12]}…) is not a "
     "valid skops (zip) file"),
    ({"artifact": ("naive.onnx", b"not onnx")}, {"version": "x9"}, ADMIN_KEY, 422,
     f"artifact naive.onnx (sha256 {hashlib.sha256(b'not onnx').hexdigest()[:12]}…): the "
     "ONNX model does not parse: "),
    ({"artifact": ("m.skops", b"")}, {"version": "x8"}, ADMIN_KEY, 422, "the file is empty"),
    ({"artifact": ("m.skops", b"x")}, {"version": "v1"}, ADMIN_KEY, 409, "exists already"),
])
def test_bad_uploads_get_a_4xx_naming_the_problem(server, artifacts, files, data, key, status,
                                                  message):
    files = files or {"validation_score": (None, "0.5")}  # multipart without a file
    if files.get("artifact") == ("m.skops", b"x"):  # a real model under a taken name
        files = {"artifact": ("m.skops", (artifacts / "good.skops").read_bytes())}
    response = upload(server, files, data, key=key)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def upload_head(length: int) -> bytes:
    return (f"POST {UPLOAD} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n"
            "Content-Type: multipart/form-data; boundary=XX\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    file = f'; filename="{filename}"' if filename else ""
    return (f'--XX\r\nContent-Disposition: form-data; name="{name}"{file}\r\n\r\n'.encode()
            + value + b"\r\n")


@pytest.mark.parametrize("version, status, message", [
    ("v1", 409, b"version 'v1' exists already in deployment 'main'"),
    ("v 1", 422, b"version: 1 to 100 letters, digits"),
])
def test_a_taken_or_malformed_version_is_refused_before_the_file_is_read(
        server, version, status, message):
    """The version field comes first: a name in use (or not a name) was refused only once
    the whole file (up to max_upload_bytes) had arrived. Now at once, while the client has
    sent the file's first bytes only (the server would wait ``body_timeout_seconds`` for
    the rest, then answer 408); the connection is closed, the body being unread."""
    start = part("version", version.encode()) + (
        b'--XX\r\nContent-Disposition: form-data; name="artifact"; filename="big.skops"'
        b"\r\n\r\nPK\x03\x04")
    answer, seconds = raw_request(server, upload_head(250_000) + start, timeout=60)
    assert status_of(answer) == status, (answer[-300:], seconds)
    assert message in answer and b"connection: close" in answer.lower()


def test_a_taken_version_sent_after_the_file_is_refused_once_it_has_arrived(
        server, artifacts):
    """The file first, then the version: refused as before, by the registration's own
    check (which also settles two uploads racing for one name)."""
    body = (part("artifact", (artifacts / "good.skops").read_bytes(), "m.skops")
            + part("version", b"v1") + b"--XX--\r\n")
    answer, _ = raw_request(server, upload_head(len(body)) + body, timeout=120)
    assert status_of(answer) == 409, answer[-300:]
    assert b"version 'v1' exists already" in answer


def test_the_client_sees_the_409_of_a_big_upload_under_a_taken_name(server, tmp_path):
    """The client's side of the early answer: the server answers and closes while the
    client may still be sending; it must still see the 409 and its message, not a broken
    connection. (A 50 MB file against a server taking 100 MB was checked by hand too.)"""
    big = tmp_path / "big.skops"
    big.write_bytes(b"\0" * (LIMIT - 2000))
    with Client(server.url, ADMIN_KEY, timeout=60) as admin, \
            pytest.raises(ServiceError) as error:
        admin.upload("main", "v1", big)
    assert error.value.status == 409 and "exists already" in error.value.message


def test_a_filename_keeps_no_control_or_direction_characters(server, artifacts):
    """The filename is recorded in the "registered" event (and shown on the dashboard):
    a NUL, an escape sequence and a right-to-left override came through as sent."""
    model = (artifacts / "good.skops").read_bytes()
    body = (b"--XX\r\nContent-Disposition: form-data; name=\"version\"\r\n\r\nnamed\r\n"
            b"--XX\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\""
            + "../a\x00b\x1b[31m\u202egnp.skops".encode() + b"\"\r\n\r\n" + model
            + b"\r\n--XX--\r\n")
    answer, _ = raw_request(server, (
        f"POST {UPLOAD} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n"
        "Content-Type: multipart/form-data; boundary=XX\r\n"
        f"Content-Length: {len(body)}\r\n\r\n").encode() + body, timeout=120)
    assert status_of(answer) == 201, answer[-300:]
    events = httpx.get(f"{server.url}/v1/deployments/main/events", headers=headers(),
                       params={"limit": 1000}).json()["events"]
    registered = [e for e in events if e["kind"] == "registered" and e["version"] == "named"]
    assert registered[0]["evidence"]["filename"] == "a_b_[31m_gnp.skops"


def test_a_stopped_server_leaves_no_copy_of_its_models(tmp_path, artifacts, monkeypatch):
    """uvicorn re-raises SIGTERM after a graceful stop, so ``atexit`` never ran: each stop
    left the cache folder (a copy of every uploaded and MLflow model) in the temporary
    folder. The shutdown removes it now."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))  # the server's tempfile.gettempdir()
    running = Server(config_for(tmp_path, artifacts)).start()
    try:
        response = upload(running, {"artifact": ("m.skops",
                                                 (artifacts / "good.skops").read_bytes())},
                          {"version": "cached"})
        assert response.status_code == 201, response.text
        caches = list(temporary.glob("banditops-artifacts-*"))
        assert len(caches) == 1 and [p.suffix for p in caches[0].iterdir()] == [".skops"]
    finally:
        running.stop()
    assert running.process.returncode is not None
    assert list(temporary.iterdir()) == []


def test_at_most_max_uploads_are_received_at_once(server, artifacts):
    """Each upload may hold max_upload_bytes on disk and a thread while it arrives; nothing
    bounded how many an admin key (or a leaked one) ran at once. Past MAX_UPLOADS: 503 with
    Retry-After, before any byte is read; room again once they end."""
    head = (f"POST {UPLOAD} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n"
            "Content-Type: multipart/form-data; boundary=XX\r\nContent-Length: 200000\r\n"
            "\r\n--XX\r\n").encode()
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(MAX_UPLOADS)]
    try:
        for sock in held:
            sock.sendall(head)  # an upload under way: headers read, body trickling
        files = {"artifact": ("m.skops", (artifacts / "good.skops").read_bytes())}
        deadline = time.monotonic() + 60
        while True:  # until the held ones have been admitted (a busy machine is slow)
            refused = upload(server, files, {"version": "crowded"})
            if refused.status_code == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert refused.status_code == 503, refused.text
        assert f"at most {MAX_UPLOADS} at once" in refused.json()["detail"]
        assert refused.headers["retry-after"]
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 60
    while (answer := upload(server, files, {"version": "after-crowd"})).status_code == 503:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.1)
    assert answer.status_code == 201, answer.text


def test_wrong_content_types_and_bodies(server):
    url = f"{server.url}{UPLOAD}"
    response = httpx.post(url, json={"version": "j"}, headers=headers(ADMIN_KEY))
    assert response.status_code == 415 and "multipart/form-data" in response.json()["detail"]
    response = httpx.post(url, content=b"--a\r\n", headers={
        **headers(ADMIN_KEY), "content-type": "multipart/form-data"})
    assert response.status_code == 400 and "boundary" in response.json()["detail"]
    response = httpx.post(url, content=b"--a\r\nContent-Disposition: form-data; name=\"v",
                          headers={**headers(ADMIN_KEY),
                                   "content-type": "multipart/form-data; boundary=a"})
    assert response.status_code == 400 and "closing boundary" in response.json()["detail"]
    response = upload(server, {"artifact": ("m.skops", b"x")}, deployment="nope")
    assert response.status_code == 404
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_skops_upload_that_would_run_code_is_refused_and_runs_nothing(server, tmp_path):
    marker = tmp_path / "ran"
    x, y = make_rows(200)
    path = tmp_path / "crafted.skops"
    from skops.io import dump

    dump(LogisticRegression().fit(x, y), path)
    rewrite(path, lambda schema, _: add_attribute(
        schema, "payload", reduce_call("os", "system", f"touch '{marker}'")))
    response = upload(server, {"artifact": ("crafted.skops", path.read_bytes())},
                      {"version": "evil"})
    assert response.status_code == 422 and "os.system" in response.json()["detail"]
    assert not marker.exists()
    assert "evil" not in {v["name"] for v in
                          httpx.get(f"{server.url}/v1/deployments/main",
                                    headers=headers()).json()["versions"]}


def test_an_uploaded_version_survives_a_restart_and_serves_from_a_second_server(
        tmp_path, artifacts, postgres_url):
    private = tmp_path / "models"  # a folder only the first server's config names
    private.mkdir()
    shutil.copy(artifacts / "good.skops", private / "good.skops")
    (tmp_path / "a").mkdir()
    first = Server(config_for(tmp_path / "a", private), db=postgres_url).start()
    try:
        with Client(first.url, ADMIN_KEY, timeout=120) as admin:
            model = LogisticRegression(C=0.5).fit(*make_rows(500, seed=3))
            from skops.io import dump

            dump(model, tmp_path / "fresh.skops")
            answer = admin.upload("main", "uploaded", tmp_path / "fresh.skops")
            admin.retire("main", "v1")
        first.stop()
        (tmp_path / "fresh.skops").unlink()
        first.start()  # a restart: the upload comes back from the database
        assert set(served_by(first.url, 50)) == {"uploaded"}
        (tmp_path / "b").mkdir()
        second = Server(config_for(tmp_path / "b", private), db=postgres_url).start()
        try:  # another process, its own cache: the bytes come from PostgreSQL
            assert set(served_by(second.url, 50)) == {"uploaded"}
            with Client(second.url, CLIENT_KEY) as client:
                events = client.events("main")
            assert any(e["kind"] == "registered" and e["version"] == "uploaded"
                       and e["evidence"]["sha256"] == answer["sha256"] for e in events)
        finally:
            second.stop()
    finally:
        first.stop()


def test_the_client_upload_reports_errors(server, tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"123")
    with Client(server.url, ADMIN_KEY) as admin, pytest.raises(ServiceError) as error:
        admin.upload("main", "bin", bad)
    assert error.value.status == 422 and "unknown format" in error.value.message
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/readyz").status_code != 200:  # still serving
        assert time.monotonic() < deadline
        time.sleep(0.05)
