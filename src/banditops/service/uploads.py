"""Receiving an uploaded artifact: a multipart/form-data body streamed to a file.

``POST /v1/deployments/{name}/versions/upload`` takes the fields ``version``, optional
``validation_score`` and the file ``artifact``, whose suffix picks the format (.skops,
.onnx; .joblib/.pkl only with ``allow_pickle``). The ASGI guard checked the key, the
Content-Type and a declared Content-Length (``max_upload_bytes``) before any byte was read;
here the body is read chunk by chunk: at most ``max_upload_bytes`` (413 as soon as it is
passed), each chunk within ``body_timeout_seconds`` of the last and all of it within
``upload_timeout_seconds`` (408). Chunks are gathered up to 1 MiB on the event loop and then
parsed (python-multipart), hashed and written to a file in a worker thread, so neither a
big body nor a slow disk holds up other requests, and memory stays bounded whatever the
size. The sha256 is of the artifact's bytes, computed as they arrive.

A ``version`` field sent before the file (as clients do) is checked as soon as it is parsed,
before the file is read: a name already taken is a 409 (a malformed one a 422) at once, not
after up to ``max_upload_bytes`` have been received. Until then each chunk is parsed as it
arrives (at most ``EAGER_BYTES`` of them), so the check comes before the next chunk is read.
The registration checks the name again (two uploads may race for it), and so does a form
that sends the file first.

Limits on the form itself: at most ``MAX_PARTS`` parts and ``MAX_HEADER_BYTES`` of part
headers each, text fields of at most ``MAX_FIELD_BYTES``, one artifact, no unknown fields.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from banditops.errors import ArtifactError
from banditops.service.artifacts import FORMATS
from banditops.service.endpoints import VERSION_NAME, HttpError

MAX_PARTS = 8
MAX_HEADER_BYTES = 8 * 1024  # one part's headers
MAX_FIELD_BYTES = 1024  # version, validation_score
FLUSH_BYTES = 1 << 20  # chunks gathered before a trip to the worker thread
EAGER_BYTES = 128 * 1024  # parsed chunk by chunk until the version is checked (fields only)
FIELDS = ("version", "validation_score", "artifact")


@dataclass(frozen=True)
class Upload:
    version: str
    validation_score: float | None
    path: Path  # the received artifact (the caller moves or deletes it)
    filename: str
    suffix: str  # .skops, .onnx or .pkl/.joblib/.pickle
    sha256: str
    size: int


class _Form:
    """python-multipart callbacks: text fields in memory, the artifact to ``sink``."""

    def __init__(self, sink: Any, allow_pickle: bool) -> None:
        self.sink = sink
        self.allow_pickle = allow_pickle
        self.digest = hashlib.sha256()
        self.size = 0
        self.fields: dict[str, bytearray] = {}
        self.filename: str | None = None
        self.parts = 0
        self.ended = False
        self.version_first = False  # the version field ended before the artifact began
        self._header_bytes = 0
        self._field = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None  # the current part's field

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._data,
                "on_part_end": self._part_end, "on_end": self._end}

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise HttpError(413, f"more than {MAX_PARTS} parts in the form; send version, "
                                 "validation_score and artifact")
        self._header_bytes, self._headers, self._field, self._name = 0, {}, b"", None

    def _count(self, data: bytes, start: int, end: int) -> bytes:
        self._header_bytes += end - start
        if self._header_bytes > MAX_HEADER_BYTES:
            raise HttpError(413, f"a part's headers are over {MAX_HEADER_BYTES:,} bytes")
        return data[start:end]

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += self._count(data, start, end)

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        name = self._field.lower()
        self._headers[name] = self._headers.get(name, b"") + self._count(data, start, end)

    def _header_end(self) -> None:
        self._field = b""

    def _headers_finished(self) -> None:
        kind, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("latin-1")
        if kind != b"form-data" or not name:
            raise HttpError(422, "each part needs 'Content-Disposition: form-data; name=...'")
        if name not in FIELDS:
            raise HttpError(422, f"unknown form field {name[:50]!r}; send {', '.join(FIELDS)}")
        if name in self.fields or (name == "artifact" and self.filename is not None):
            raise HttpError(422, f"form field {name!r} is sent twice")
        if name == "artifact":
            self._artifact(options.get(b"filename"))
        else:
            self.fields[name] = bytearray()
        self._name = name

    def _artifact(self, raw: bytes | None) -> None:
        filename = (raw or b"").decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
        # kept in the "registered" event and shown on the dashboard: no NUL, control or
        # direction characters ("a\u202egnp.skops" must not read as "a...png")
        filename = "".join(c if c.isprintable() else "_" for c in filename)
        if not filename:
            raise HttpError(422, "artifact: send the model as a file (with a filename whose "
                                 "suffix says its format: .skops or .onnx)")
        kind = FORMATS.get(Path(filename).suffix.lower())
        if kind is None:
            raise ArtifactError(f"artifact {filename[:100]!r}: unknown format; use .skops or "
                                ".onnx (or .joblib/.pkl with allow_pickle)")
        if kind == "pickle" and not self.allow_pickle:
            raise ArtifactError(f"artifact {filename[:100]!r}: pickle/joblib artifacts can run "
                                "code when loaded; set allow_pickle = true in the config to "
                                "accept them")
        self.filename = filename[:200]

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._name == "artifact":
            chunk = data[start:end]
            self.digest.update(chunk)
            self.sink.write(chunk)
            self.size += len(chunk)
        elif self._name is not None:
            value = self.fields[self._name]
            value += data[start:end]
            if len(value) > MAX_FIELD_BYTES:
                raise HttpError(413, f"form field {self._name!r} is over {MAX_FIELD_BYTES:,} "
                                     "bytes")

    def _part_end(self) -> None:
        if self._name == "version" and self.filename is None:
            self.version_first = True

    def _end(self) -> None:
        self.ended = True

    def text(self, name: str) -> str | None:
        value = self.fields.get(name)
        if value is None:
            return None
        try:
            return value.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise HttpError(422, f"form field {name!r} is not UTF-8") from None


def boundary_of(content_type: bytes) -> bytes:
    """The multipart boundary of a Content-Type header (400 when it has none)."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary", b"")
    if not 1 <= len(boundary) <= 200:
        raise HttpError(400, "multipart/form-data without a valid boundary parameter")
    return boundary


async def receive_upload(receive: Any, content_type: bytes, path: Path, *, limit: int,
                         idle_seconds: float, total_seconds: float, allow_pickle: bool,
                         check_version: Callable[[str], Awaitable[None]] | None = None
                         ) -> Upload:
    """Read the form from ``receive`` into ``path`` (see the module docstring).
    ``check_version(name)`` raises if the name is taken; it is awaited once the version
    field is parsed, if that comes before the artifact."""
    boundary = boundary_of(content_type)
    with path.open("wb") as sink:
        form = _Form(sink, allow_pickle)
        try:
            parser = MultipartParser(boundary, form.callbacks())
        except (FormParserError, ValueError) as error:
            raise HttpError(400, f"malformed multipart body: {error}") from None
        deadline = time.monotonic() + total_seconds
        pending: list[bytes] = []
        pending_size = received = 0
        more = True
        unchecked = check_version is not None
        while more:
            wait = min(idle_seconds, deadline - time.monotonic())
            try:
                async with asyncio.timeout(max(wait, 0.0)):
                    message = await receive()
            except TimeoutError:
                raise HttpError(408, "the upload did not arrive in time (each chunk within "
                                     f"{idle_seconds:g} s, all within {total_seconds:g} s)"
                                ) from None
            if message["type"] != "http.request":
                raise HttpError(400, "the client went away during the upload")
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            received += len(chunk)
            if received > limit:
                raise HttpError(413, f"upload over the {limit:,}-byte limit "
                                     "(max_upload_bytes)")
            pending.append(chunk)
            pending_size += len(chunk)
            eager = unchecked and form.filename is None and received <= EAGER_BYTES
            if pending_size >= FLUSH_BYTES or not more or eager:
                data = b"".join(pending)
                pending, pending_size = [], 0
                await asyncio.to_thread(_write, parser, data)
            if unchecked and form.version_first and check_version is not None:
                unchecked = False  # before any more of the body is read
                await check_version(_version(form))
    if not form.ended:
        raise HttpError(400, "malformed multipart body: it ends before its closing boundary")
    return _finish(form, path)


def _write(parser: MultipartParser, data: bytes) -> None:
    try:
        parser.write(data)
    except FormParserError as error:
        raise HttpError(400, f"malformed multipart body: {error}") from None


def _version(form: _Form) -> str:
    """The version field, checked (422 unless it is a valid name)."""
    version = form.text("version")
    if version is None or not VERSION_NAME.fullmatch(version):
        raise HttpError(422, "version: 1 to 100 letters, digits, '.', '_' or '-'")
    return version


def _finish(form: _Form, path: Path) -> Upload:
    missing = [n for n, v in (("version", form.text("version")), ("artifact", form.filename))
               if v is None]
    if missing:
        raise HttpError(422, f"missing form field(s) {missing}")
    version = _version(form)
    score_text = form.text("validation_score")
    score = None
    if score_text:
        try:
            score = float(score_text)
        except ValueError:
            raise HttpError(422, "validation_score: expected a number") from None
        if not math.isfinite(score) or not 0.0 <= score <= 1.0:
            raise HttpError(422, "validation_score: expected a number from 0 to 1")
    if form.size == 0:
        raise HttpError(422, "artifact: the file is empty")
    return Upload(version, score, path, form.filename, Path(form.filename).suffix.lower(),
                  form.digest.hexdigest(), form.size)
