"""``GET /v1/deployments/{d}/decisions/export``: the decision log as a Parquet or CSV file.

The rows are the deployment's decisions in the shared database (every replica's), written in
the decision-log file format by :mod:`banditops.store.export`, which ``banditops evaluate``
reads. The answer is streamed: each chunk of ``CHUNK_ROWS`` decisions is read and encoded in
a thread of its own (never on the event loop, never on the deployment's worker, which serves
predictions) while the previous one is sent, so memory stays one chunk per export whatever
its size, and a slow reader only slows its own export (the sending waits for the client;
no transaction is held open meanwhile).

Bounds: at most ``MAX_EXPORT_ROWS`` decisions per answer (``limit``, default
``DEFAULT_EXPORT_ROWS``; ``X-Banditops-Truncated: true`` says the range holds more: ask again
with ``since`` = the last row's ``time`` and drop the decision ids already read, since
decisions of one batch share their time), and at most ``MAX_EXPORTS`` exports at once per
process (503 with Retry-After past that), so exports cannot take every thread or connection.

What can fail is checked before the answer starts (the range, the deployment, the database:
a plan of the export counts its rows and finds its columns first); a database failure in the
middle of the stream ends the connection without the final chunk, so the client sees a
truncated transfer, never a short file that looks whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

from fastapi.responses import StreamingResponse

from banditops.errors import OverloadedError
from banditops.store.export import MEDIA_TYPES, Format, check_range, export_bytes, plan_export
from banditops.store.sql import Store

MAX_EXPORTS = 2  # exports streaming at once per process
DEFAULT_EXPORT_ROWS = 100_000
MAX_EXPORT_ROWS = 1_000_000
MAX_TIME = 1e11  # Unix seconds, the year 5138: any later bound is a mistake


class Exports:
    """The exports under way in this process, each read in a thread of ``threads``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.running = 0
        self._threads = ThreadPoolExecutor(MAX_EXPORTS, thread_name_prefix="export")

    async def answer(self, deployment: str, fmt: Format, since: float | None,
                     until: float | None, limit: int) -> StreamingResponse:
        check_range(since, until, limit)
        if self.running >= MAX_EXPORTS:
            raise OverloadedError(f"{self.running} decision-log exports are under way; at "
                                  f"most {MAX_EXPORTS} at once: retry when one has finished")
        self.running += 1
        loop = asyncio.get_running_loop()
        try:
            plan = await loop.run_in_executor(self._threads, lambda: plan_export(
                self.store, deployment, since=since, until=until, limit=limit))
        except BaseException:
            self.running -= 1
            raise
        pieces = export_bytes(self.store, plan, fmt)
        headers = {"content-disposition": f'attachment; filename="{deployment}-decisions.{fmt}"',
                   "x-banditops-rows": str(plan.rows),
                   "x-banditops-truncated": "true" if plan.truncated else "false",
                   "cache-control": "no-store"}
        return StreamingResponse(self._stream(pieces), media_type=MEDIA_TYPES[fmt],
                                 headers=headers)

    async def _stream(self, pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
        """Each piece from a thread; the slot is freed when the export ends, however."""
        loop = asyncio.get_running_loop()
        try:
            while (piece := await loop.run_in_executor(self._threads, next, pieces,
                                                       None)) is not None:
                if piece:
                    yield piece
        finally:
            self.running -= 1
