"""Any CSV table as a replay stream: read as it comes, columns typed, bad rows reported.

A table arrives as people have it: comma- or semicolon-separated, quoted or not, UTF-8 or
Latin-1, with numbers, categories, yes/no flags and dates, a few broken lines and missing
values. :func:`load_csv` reads it without options beyond the target column:

- the separator and encoding are sniffed (:func:`sniff_csv`; ``sep`` overrides);
- every column is typed (:func:`type_column`): **numeric**, **boolean** (true/false,
  yes/no, t/f, y/n: read as 0/1), **date** (one date format throughout: read as days since
  1970, so a date works as a feature and in ``order_by``) or **categorical**;
- the target may be binary or have several classes (:func:`encode_target`);
- unusable rows (a malformed line, a missing target or ordering value, text in a numeric
  column, an infinite number) are skipped and reported, never fatal.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from banditops.errors import BanditOpsError
from banditops.simulation.datasets import DataNotFoundError, Dataset

NUMERIC_SHARE = 0.9  # a text column whose values are at least this often numbers is numeric
DATE_SHARE = 0.9  # ... or dates in one format
MIN_CSV_ROWS = 200
MAX_CLASSES = 50  # more distinct target values than this: a quantity, not a class
CSV_SEPARATORS = ",;\t|"
TRUE_WORDS = frozenset({"true", "yes", "t", "y"})
FALSE_WORDS = frozenset({"false", "no", "f", "n"})
EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


@dataclass(frozen=True)
class CsvReport:
    """What loading a user's table skipped, and why (a few examples of each reason), and
    how its columns were read."""

    rows_read: int
    rows_used: int
    problems: dict[str, list[str]]  # reason -> examples
    kinds: dict[str, str] | None = None  # feature column -> numeric|boolean|date|categorical
    notes: tuple[str, ...] = ()  # how the target was read; a date the rows do not follow

    @property
    def skipped(self) -> int:
        return self.rows_read - self.rows_used

    def describe(self) -> str:
        if not self.skipped:
            lines = [f"{self.rows_used:,} rows, none skipped"]
        else:
            lines = [f"{self.rows_used:,} of {self.rows_read:,} rows used; "
                     f"{self.skipped:,} skipped:"]
            for reason, examples in self.problems.items():
                lines.append(f"  - {reason}: e.g. {'; '.join(examples[:3])}")
        if self.kinds:
            lines.append(f"  columns: {describe_kinds(self.kinds)}")
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


def describe_kinds(kinds: dict[str, str]) -> str:
    """"6 numeric, 1 date (Date), 2 categorical": what a table's columns were read as."""
    parts = []
    for kind in ("numeric", "boolean", "date", "categorical"):
        columns = [c for c, k in kinds.items() if k == kind]
        if columns:
            named = f" ({', '.join(columns[:4])}{', ...' if len(columns) > 4 else ''})"
            parts.append(f"{len(columns)} {kind}{named if kind != 'numeric' else ''}")
    return ", ".join(parts)


def sniff_csv(path: Path, sep: str | None = None) -> tuple[str, str]:
    """(separator, encoding) of a CSV file, from its first 64 KiB: UTF-8 (with or without a
    byte-order mark) else Latin-1, which decodes any bytes; the separator that
    :class:`csv.Sniffer` finds among ``, ; tab |`` (quotes respected), else a comma."""
    with path.open("rb") as handle:
        raw = handle.read(65536)
    cut = raw.rfind(b"\n")
    sample_bytes = raw[:cut] if cut > 0 else raw  # whole lines only: no split character
    try:
        sample, encoding = sample_bytes.decode("utf-8-sig"), "utf-8-sig"
    except UnicodeDecodeError:
        sample, encoding = sample_bytes.decode("latin-1"), "latin-1"
    if sep is not None:
        return sep, encoding
    try:
        return csv.Sniffer().sniff(sample, delimiters=CSV_SEPARATORS).delimiter, encoding
    except csv.Error:
        return ",", encoding


def encode_target(values: pd.Series, target: str, positive: str | None
                  ) -> tuple[pd.Series, tuple[str, ...], str]:
    """Class codes (NaN where the target is missing), the class names by code, and a note
    on how the classes were read.

    Two values: binary, positive class ``positive``, else 1 / true / yes, else the rarer
    value. More values: one class each, codes in sorted order (numerically when they are
    numbers), unless ``positive`` names one class against the rest.
    """
    if pd.api.types.is_float_dtype(values) and values.dropna().mod(1).eq(0).all():
        values = values.astype("Int64")  # classes 1, 2, 3 read as floats print as 1.0, ...
    text = values.astype("string").str.strip()
    text = text.mask(text == "")
    counts = text.value_counts()
    present = counts.index.tolist()
    if positive is not None:
        if str(positive) not in present:
            raise BanditOpsError(
                f"--positive {positive!r} never occurs in column {target!r}; its values "
                f"include {sorted(present)[:10]}")
        codes = (text == str(positive)).astype("Float64").mask(text.isna())
        return codes, (f"not {positive}", str(positive)), ""
    if len(present) < 2:
        raise BanditOpsError(f"column {target!r} has {len(present)} distinct value(s); a "
                             "target needs at least two classes")
    if len(present) == 2:
        for value in present:
            if value.lower() in ("1", "1.0", "true", "yes"):
                other = next(v for v in present if v != value)
                return ((text == value).astype("Float64").mask(text.isna()), (other, value), "")
        rarer, other = counts.index[-1], counts.index[0]
        return ((text == rarer).astype("Float64").mask(text.isna()), (other, rarer),
                f"target {target!r}: positive class {rarer!r} (the rarer value; choose with "
                "--positive)")
    numbers = pd.to_numeric(pd.Series(present), errors="coerce")
    ordered = ([present[i] for i in np.argsort(numbers.to_numpy(), kind="stable")]
               if numbers.notna().all() else sorted(present))
    if len(present) > MAX_CLASSES:
        raise BanditOpsError(
            f"column {target!r} has {len(present):,} distinct values ({', '.join(ordered[:3])}"
            f", ..., {ordered[-1]}): a quantity, not a class. The target must have at most "
            f"{MAX_CLASSES} classes; for a yes/no question on it, write that column into the "
            "table")
    mapping = {value: float(code) for code, value in enumerate(ordered)}
    codes = text.map(mapping).astype("Float64")
    return codes, tuple(ordered), f"target {target!r}: {len(ordered)} classes"


def type_column(values: pd.Series) -> tuple[str, pd.Series, pd.Series]:
    """(kind, values as the models see them, mask of rows that hold unusable text).

    Numeric when at least 90% of the present values are numbers (the rest: unusable text);
    boolean when every present value is a yes/no word; date when at least 90% parse in one
    date format (the rest: missing); categorical otherwise.
    """
    if pd.api.types.is_bool_dtype(values):
        return "boolean", values.astype(float), pd.Series(False, index=values.index)
    if pd.api.types.is_numeric_dtype(values):
        return "numeric", values.astype(float), pd.Series(False, index=values.index)
    text = values.astype("string").str.strip()
    present = text.notna() & (text != "")
    none = pd.Series(False, index=values.index)
    if not present.any():
        return "categorical", text.astype(object).where(present, np.nan), none
    numbers = pd.to_numeric(text, errors="coerce")
    if (numbers.notna() & present).sum() >= NUMERIC_SHARE * present.sum():
        return "numeric", numbers.astype(float), present & numbers.isna()
    lowered = text.str.lower()
    words = set(lowered[present].unique())
    if words <= TRUE_WORDS | FALSE_WORDS and len(words) <= 2:
        flags = lowered.map(lambda w: 1.0 if w in TRUE_WORDS else 0.0 if w in FALSE_WORDS
                            else np.nan)
        return "boolean", flags.astype(float), none
    dates = _as_dates(text[present])
    if dates is not None:
        return "date", dates.reindex(values.index), none
    return "categorical", text.astype(object).where(present, np.nan), none


def _as_dates(text: pd.Series) -> pd.Series | None:
    """Days since 1970 (fractional) when the values are dates in one format, else None.
    The format is guessed from the first value, month first and day first (01/02/2024 is
    either); the one that reads more of the values wins."""
    first = str(text.iloc[0])
    if not any(ch.isdigit() for ch in first):
        return None
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        formats = {guess_datetime_format(first, dayfirst=d) for d in (False, True)} - {None}
        for fmt in sorted(formats):
            parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
            if best is None or parsed.notna().sum() > best.notna().sum():
                best = parsed
    if best is None or best.notna().sum() < DATE_SHARE * len(text):
        return None
    return (best - EPOCH) / pd.Timedelta(days=1)


def load_csv(path: str | Path, target: str, *, positive: str | None = None,
             order_by: list[str] | None = None,
             sep: str | None = None) -> tuple[Dataset, CsvReport]:
    """Any table as a classification stream (see the module docstring).

    Rows are replayed in file order, or sorted by ``order_by`` (numbers and dates in
    time order, text alphabetically). Missing feature values stay missing: the models
    impute them.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"CSV file {path} not found")
    if sep is not None and len(sep) != 1:
        raise BanditOpsError(f"--sep must be one character, got {sep!r}")
    sep, encoding = sniff_csv(path, sep)
    malformed: list[str] = []

    def bad_line(fields: list[str]) -> None:
        malformed.append(sep.join(fields)[:80])
        return None

    try:
        try:  # the C parser is ~10x faster; it cannot report bad lines one by one
            frame = pd.read_csv(path, sep=sep, encoding=encoding, skipinitialspace=True,
                                low_memory=False)
        except pd.errors.ParserError:
            frame = pd.read_csv(path, sep=sep, encoding=encoding, engine="python",
                                on_bad_lines=bad_line, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise BanditOpsError(f"cannot read {path} as CSV: {error}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(set(frame.columns)) < len(frame.columns):
        repeated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
        raise BanditOpsError(f"{path} repeats column name(s) {repeated}")
    order_by = list(order_by or [])
    missing = [c for c in [target, *order_by] if c not in frame.columns]
    if missing:
        raise BanditOpsError(
            f"column(s) {missing} not in {path}; columns: {list(frame.columns)}"
            + ("" if len(frame.columns) > 1 else
               f" (read with separator {sep!r}; pass --sep if that is wrong)"))
    if target in order_by:
        raise BanditOpsError(f"--order-by cannot use the target column {target!r}")
    problems: dict[str, list[str]] = {}
    if malformed:
        problems["malformed line (wrong number of fields)"] = malformed
    usable = pd.Series(True, index=frame.index)

    def reject(mask: pd.Series, reason: str) -> None:
        new = mask & usable
        if new.any():
            problems.setdefault(reason, []).extend(
                f"data row {i + 1}" for i in frame.index[new][:5])
            usable[new] = False

    labels, classes, note = encode_target(frame.pop(target), target, positive)
    reject(labels.isna(), f"missing target {target!r}")
    kinds: dict[str, str] = {}
    for column in list(frame.columns):
        values = frame[column]
        if values.isna().all():
            frame = frame.drop(columns=column)  # nothing to learn from
            continue
        kind, typed, unusable = type_column(values)
        reject(unusable, f"text in numeric column {column!r}")
        if kind != "categorical":
            reject(pd.Series(np.isinf(typed.to_numpy(dtype=float)), index=frame.index),
                   f"infinite number in {column!r}")
        frame[column] = typed
        kinds[column] = kind
    for column in order_by:
        if column not in frame.columns:
            raise BanditOpsError(f"--order-by column {column!r} is empty")
        reject(frame[column].isna(), f"missing ordering value {column!r}")
    rows_read = len(frame) + len(malformed)
    frame, labels = frame[usable], labels[usable].astype(int)
    if order_by:
        keys = pd.DataFrame({c: (frame[c] if kinds[c] != "categorical"
                                 else frame[c].astype(str)) for c in order_by})
        order = keys.sort_values(order_by, kind="stable").index
        frame, labels = frame.loc[order], labels.loc[order]
    frame, labels = frame.reset_index(drop=True), labels.reset_index(drop=True)
    notes = [note] if note else []
    for column, kind in kinds.items():
        dates = frame[column].dropna()
        if kind == "date" and not order_by and not dates.is_monotonic_increasing:
            notes.append(f"column {column!r} holds dates the rows are not in order of; "
                         f"replay in time order with --order-by {column}")
    report = CsvReport(rows_read, len(frame), problems, kinds, tuple(notes))
    if len(frame) < MIN_CSV_ROWS or labels.nunique() < 2:
        raise BanditOpsError(
            f"{path} leaves {len(frame)} usable rows in {labels.nunique()} class(es); a "
            f"replay needs at least {MIN_CSV_ROWS} rows and two classes.\n{report.describe()}")
    if frame.shape[1] == 0:
        raise BanditOpsError(f"{path} has no feature columns besides {target!r}")
    order = (f"the order of {', '.join(order_by)}" if order_by else "file order")
    return Dataset(path.stem, frame, labels, f"{path.name}: predict {target}",
                   classes=classes, order=order, kinds=kinds), report
