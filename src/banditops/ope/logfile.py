"""The decision-log file: what off-policy evaluation reads, and what the replay and the
service export (Parquet ``.parquet`` or CSV ``.csv``), one row per decision.

==================  =========  ==========================================================
column              type       meaning
==================  =========  ==========================================================
``decision_id``     str        unique per row
``time``            float      when the decision was made (any unit; rows are taken in
                               time order, file order breaking ties)
``version``         str        the version that served it
``propensity``      float      the logged chance of ``version``, in (0, 1]
``reward``          float      in [0, 1]; empty / NaN: no feedback arrived
``live``            str        optional: JSON list of the versions live at decision time
``feedback_time``   float      optional: when the reward arrived (>= ``time``); without
                               it the evaluation is told a delay in decisions
``validation_score`` float     optional: the served version's offline validation score
                               (what ``validation-champion`` ranks by)
``feature:<name>``  any        one column per request feature
``reward:<version>`` float     optional shadow rewards: what ``<version>`` earned on the
                               row (it was scored on the label without serving)
==================  =========  ==========================================================

:func:`read_log` and :func:`write_log` validate a log the same way: a missing column, a
propensity outside (0, 1] or below ``MIN_PROPENSITY``, a non-finite number, a reward
outside [0, 1], a duplicate decision id or a version missing from its own ``live`` list is one
:class:`LogFormatError` naming the column and the first row at fault (rows count from 1,
the header excluded, in file order).

**CSV is written safe to open in a spreadsheet.** Feature values come from clients: a text
cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would run as a
formula in Excel or LibreOffice (CSV injection, OWASP), so :func:`csv_text` writes such a
cell, and a cell already starting with ``'`` followed by one of them, with one more leading
``'`` (the spreadsheet shows the text), and :func:`read_log` drops it again: the round trip
is exact. Lines end with CRLF (RFC 4180), so a carriage return inside a value is quoted and
cannot split a row.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from banditops.errors import InvalidParameterError

REQUIRED = ("decision_id", "time", "version", "propensity", "reward")
OPTIONAL = ("live", "feedback_time", "validation_score")
FEATURE = "feature:"
SHADOW = "reward:"
SUFFIXES = (".parquet", ".csv")
MIN_PROPENSITY = 1e-100  # smaller: 1/p squared overflows; no real decision is that unlikely
_NA = ["", "nan", "NaN", "NA", "null", "None"]
_FORMULA = re.compile(r"'*[=+\-@\t\r]")  # a cell a spreadsheet would evaluate (escaped)
_ESCAPED = re.compile(r"'+[=+\-@\t\r]")


class LogFormatError(InvalidParameterError):
    """A decision log that breaks the format (the message names the column and row)."""


@dataclass(frozen=True)
class DecisionLogFrame:
    """A validated decision log: ``frame`` sorted by time (file order breaking ties), with
    what evaluation needs of it parsed once."""

    frame: pd.DataFrame
    source: str = "log"

    @classmethod
    def trusted(cls, frame: pd.DataFrame, source: str,
                live_sets: list[tuple[str, ...]] | None = None) -> DecisionLogFrame:
        """A log banditops built itself, already in time order: not validated again (the
        replay check builds thousands); ``live_sets`` parsed already, if known."""
        log = cls(frame, source)
        if live_sets is not None:
            log.__dict__["live_sets"] = live_sets
        return log

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def features(self) -> list[str]:
        """Request feature names (the ``feature:`` columns, prefix dropped)."""
        return [c[len(FEATURE):] for c in self.frame.columns if c.startswith(FEATURE)]

    @property
    def shadow_versions(self) -> list[str]:
        """Versions with a shadow-reward column."""
        return [c[len(SHADOW):] for c in self.frame.columns if c.startswith(SHADOW)]

    @property
    def has_live(self) -> bool:
        return "live" in self.frame.columns

    @property
    def has_feedback_time(self) -> bool:
        return "feedback_time" in self.frame.columns

    @cached_property
    def live_sets(self) -> list[tuple[str, ...]]:
        """Versions live at each decision: the ``live`` column, else every version served
        so far that the log still serves later (first serve to last serve)."""
        if self.has_live:
            return _parse_live(self.frame["live"])  # type: ignore[return-value]
        versions = self.frame["version"].tolist()
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        for row, name in enumerate(versions):
            first.setdefault(name, row)
            last[name] = row
        order = sorted(first, key=first.__getitem__)
        return [tuple(n for n in order if first[n] <= row <= last[n])
                for row in range(len(versions))]

    @cached_property
    def versions(self) -> list[str]:
        """Every version the log names (served or live), in order of first appearance."""
        seen: dict[str, None] = {}
        for live, served in zip(self.live_sets, self.frame["version"], strict=True):
            seen.update(dict.fromkeys(live))
            seen[served] = None
        return list(seen)

    def validation_scores(self) -> dict[str, float]:
        """Each served version's validation score, where the log has the column."""
        if "validation_score" not in self.frame.columns:
            return {}
        scored = self.frame[["version", "validation_score"]].dropna()
        return {str(v): float(s) for v, s in scored.groupby("version", sort=False)[
            "validation_score"].first().items()}

    def contexts(self) -> list[dict[str, Any]]:
        """Each row's features as {name: value} (NaN read as None)."""
        columns = [c for c in self.frame.columns if c.startswith(FEATURE)]
        if not columns:
            return [{} for _ in range(len(self.frame))]
        names = [c[len(FEATURE):] for c in columns]
        values = self.frame[columns].astype(object).where(self.frame[columns].notna(), None)
        return [dict(zip(names, row, strict=True)) for row in values.itertuples(index=False)]


def _fail(column: str, rows: np.ndarray | pd.Index | list[int], what: str) -> LogFormatError:
    """The error for the first offending row (``rows``: positions in file order)."""
    first = int(rows[0])
    more = f" (and {len(rows) - 1:,} more rows)" if len(rows) > 1 else ""
    return LogFormatError(f"column {column!r}, row {first + 1}: {what}{more}")


def _numbers(frame: pd.DataFrame, column: str, *, allow_nan: bool) -> np.ndarray:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy() & raw.notna().to_numpy()
                         & (raw.astype(str).str.strip() != "").to_numpy())
    if len(bad):
        raise _fail(column, bad, f"{raw.iloc[bad[0]]!r} is not a number")
    array = values.to_numpy(dtype=float)
    if not allow_nan and np.isnan(array).any():
        raise _fail(column, np.flatnonzero(np.isnan(array)), "missing value")
    infinite = np.flatnonzero(np.isinf(array))
    if len(infinite):
        raise _fail(column, infinite, f"{array[infinite[0]]} is not finite")
    return array


def _strings(frame: pd.DataFrame, column: str) -> pd.Series:
    values = frame[column]
    bad = np.flatnonzero([not isinstance(v, str) or not v for v in values])
    if len(bad):
        raise _fail(column, bad, f"{values.iloc[bad[0]]!r} is not a non-empty string")
    return values


def validate_log(frame: pd.DataFrame, source: str = "log") -> DecisionLogFrame:
    """Check a decision log (see the module docstring) and return it sorted by time.

    >>> frame = pd.DataFrame({"decision_id": ["a", "b"], "time": [0.0, 1.0],
    ...                       "version": ["v1", "v1"], "propensity": [0.5, 1.5],
    ...                       "reward": [1.0, None]})
    >>> validate_log(frame)
    Traceback (most recent call last):
    ...
    banditops.ope.logfile.LogFormatError: log: column 'propensity', row 2: 1.5 is outside (0, 1]
    """
    try:
        return _validate(frame, source)
    except LogFormatError as error:
        raise LogFormatError(f"{source}: {error}") from None


def _validate(frame: pd.DataFrame, source: str) -> DecisionLogFrame:
    if not isinstance(frame, pd.DataFrame):
        raise LogFormatError(f"a decision log is a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise LogFormatError(f"missing column(s) {', '.join(missing)}; a decision log has "
                             f"{', '.join(REQUIRED)} (and optionally {', '.join(OPTIONAL)}, "
                             f"{FEATURE}<name>, {SHADOW}<version>)")
    if frame.columns.duplicated().any():
        raise LogFormatError(f"duplicate column {frame.columns[frame.columns.duplicated()][0]!r}")
    if frame.empty:
        raise LogFormatError("the log has no rows")
    frame = frame.reset_index(drop=True).copy()
    ids = _strings(frame, "decision_id")
    duplicated = np.flatnonzero(ids.duplicated().to_numpy())
    if len(duplicated):
        first = int(np.flatnonzero((ids == ids.iloc[duplicated[0]]).to_numpy())[0])
        raise _fail("decision_id", duplicated,
                    f"duplicate id {ids.iloc[duplicated[0]]!r} (first at row {first + 1})")
    frame["time"] = _numbers(frame, "time", allow_nan=False)
    versions = _strings(frame, "version")
    propensity = frame["propensity"] = _numbers(frame, "propensity", allow_nan=False)
    outside = np.flatnonzero((propensity <= 0) | (propensity > 1))
    if len(outside):
        raise _fail("propensity", outside, f"{propensity[outside[0]]:g} is outside (0, 1]")
    tiny = np.flatnonzero(propensity < MIN_PROPENSITY)
    if len(tiny):  # its weight 1/p, squared in every variance, would overflow to inf / NaN
        raise _fail("propensity", tiny, f"{propensity[tiny[0]]:g} is below {MIN_PROPENSITY:g}: "
                    "no logger serves a version that unlikely; the log is broken")
    reward = frame["reward"] = _numbers(frame, "reward", allow_nan=True)
    outside = np.flatnonzero((reward < 0) | (reward > 1))
    if len(outside):
        raise _fail("reward", outside, f"{reward[outside[0]]:g} is outside [0, 1]")
    if "feedback_time" in frame.columns:
        feedback = frame["feedback_time"] = _numbers(frame, "feedback_time", allow_nan=True)
        early = np.flatnonzero(feedback < frame["time"].to_numpy())
        if len(early):
            raise _fail("feedback_time", early, "feedback before its decision's time")
        lost = np.flatnonzero(np.isnan(feedback) & ~np.isnan(reward))
        if len(lost):
            raise _fail("feedback_time", lost, "a reward without its feedback time")
    if "validation_score" in frame.columns:
        frame["validation_score"] = _numbers(frame, "validation_score", allow_nan=True)
    for column in frame.columns:
        if column.startswith(SHADOW):
            if not column[len(SHADOW):]:
                raise LogFormatError(f"column {column!r} names no version")
            shadow = frame[column] = _numbers(frame, column, allow_nan=True)
            outside = np.flatnonzero((shadow < 0) | (shadow > 1))
            if len(outside):
                raise _fail(column, outside, f"{shadow[outside[0]]:g} is outside [0, 1]")
        elif column.startswith(FEATURE) and not column[len(FEATURE):]:
            raise LogFormatError(f"column {column!r} names no feature")
    if "live" in frame.columns:
        _check_live(frame["live"], versions)
    order = np.argsort(frame["time"].to_numpy(), kind="stable")
    if (np.diff(order) != 1).any():
        frame = frame.iloc[order].reset_index(drop=True)
    return DecisionLogFrame(frame, source)


def _parse_live(texts: pd.Series) -> list[tuple[str, ...] | None]:
    """Each row's live list (None where it is not a JSON list of names); a text is parsed
    once however many rows repeat it."""
    parsed: dict[Any, tuple[str, ...] | None] = {}
    result = []
    for text in texts:
        if text not in parsed:
            try:
                names = json.loads(text) if isinstance(text, str) else None
            except (ValueError, RecursionError):  # RecursionError: '[[[[...' nested deep
                names = None
            ok = isinstance(names, list) and all(isinstance(n, str) and n for n in names)
            parsed[text] = tuple(names) if ok else None  # type: ignore[arg-type]
        result.append(parsed[text])
    return result


def _check_live(live: pd.Series, versions: pd.Series) -> None:
    for row, (names, served) in enumerate(zip(_parse_live(live), versions, strict=True)):
        if names is None:
            raise _fail("live", [row], f"{live.iloc[row]!r} is not a JSON list of version names")
        if served not in names:
            raise _fail("live", [row], f"the served version {served!r} is not in it")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise LogFormatError(
            f"{path}: a decision log is a .parquet or .csv file, got {suffix or 'no suffix'!r}")
    return suffix


def read_log(path: str | Path) -> DecisionLogFrame:
    """Read and validate a decision log (Parquet or CSV, by suffix)."""
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise LogFormatError(f"{path}: no such file")
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            header = pd.read_csv(path, nrows=0).columns
            text = {c: str for c in ("decision_id", "version", "live") if c in header}
            # a feature is a client's text: only an empty cell is null ("None", "NA" and
            # "null" are values, as in Parquet)
            na = {c: [""] if c.startswith(FEATURE) else _NA for c in header if c not in text}
            frame = _unescape(pd.read_csv(path, dtype=text, keep_default_na=False,
                                          na_values=na))
    except (OSError, ValueError, ImportError) as error:
        raise LogFormatError(f"{path}: cannot read it as {suffix[1:]}: "
                             f"{type(error).__name__}: {error}") from None
    return validate_log(frame, str(path))


def write_log(frame: pd.DataFrame | DecisionLogFrame, path: str | Path) -> Path:
    """Validate a decision log and write it (Parquet or CSV, by suffix); returns the path."""
    path = Path(path)
    suffix = _suffix(path)
    log = frame if isinstance(frame, DecisionLogFrame) else validate_log(frame, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        log.frame.to_parquet(path, index=False)
    else:
        path.write_text(csv_text(log.frame), encoding="utf-8", newline="")
    return path


def _escape_cell(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and _FORMULA.match(value) else value


def _unescape_cell(value: Any) -> Any:
    return value[1:] if isinstance(value, str) and _ESCAPED.match(value) else value


def _text_columns(frame: pd.DataFrame) -> list[Any]:
    return [c for c in frame.columns
            if pd.api.types.is_object_dtype(frame[c]) or pd.api.types.is_string_dtype(frame[c])]


def csv_text(frame: pd.DataFrame, *, header: bool = True) -> str:
    """``frame`` as CSV text, safe to open in a spreadsheet (see the module): text cells a
    spreadsheet would evaluate get a leading ``'``, lines end with CRLF."""
    texts = _text_columns(frame)
    if texts:
        frame = frame.copy()
        for column in texts:
            frame[column] = frame[column].map(_escape_cell, na_action="ignore")
    return frame.to_csv(index=False, header=header, na_rep="", lineterminator="\r\n")


def _unescape(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`csv_text`'s escaping of formula-like text cells."""
    for column in _text_columns(frame):
        frame[column] = frame[column].map(_unescape_cell, na_action="ignore")
    return frame


def live_json(versions: list[str] | tuple[str, ...]) -> str:
    """The ``live`` column's text for a list of versions."""
    return json.dumps(list(versions), separators=(",", ":"))


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
