"""A decision log read straight from the service's SQL database (``banditops evaluate --db``).

The same rows, columns and live versions as ``GET /v1/deployments/{d}/decisions/export`` and
``banditops export-log`` (:mod:`banditops.store.export` builds all three: one reader, so the
versions live at each decision are rebuilt from the events by one rule), framed in memory
for :func:`banditops.ope.logfile.validate_log`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from banditops.errors import InvalidParameterError

if TYPE_CHECKING:
    from banditops.store.sql import Store


def open_log_database(url: str) -> Store:
    """The service's database at ``url``, read only, once its URL and schema revision are
    checked (one clear error, never the password); the caller closes it."""
    from banditops.service.config import check_database_url
    from banditops.store.sql import Store

    check_database_url(url)
    store = Store(url)
    found, head = store.revision()
    if found != head:
        store.close()
        raise InvalidParameterError(
            f"database {store.safe_url} has schema revision {found or 'none'}, not "
            f"{head}: it is not a banditops database, or one of another banditops "
            "version (start this version's service on it once: it migrates)")
    return store


def log_from_database(url: str, deployment: str) -> pd.DataFrame:
    """The decision log of ``deployment`` (decisions with their feedback, time order)."""
    from banditops.store.export import check_deployment, export_frames, plan_export

    store = open_log_database(url)
    try:
        plan = plan_export(store, deployment)
        if not plan.rows:
            check_deployment(store, deployment)
        frames = list(export_frames(store, plan))
    finally:
        store.close()
    return pd.concat(frames, ignore_index=True)
