"""Any CSV table as a replay stream: read as it comes, columns typed, bad rows reported.

A table arrives as people have it: comma- or semicolon-separated, quoted or not, UTF-8 or
Latin-1, with numbers, categories, yes/no flags and dates, a few broken lines and missing
values. :func:`load_csv` reads it without options beyond the target column:

- the separator and encoding are sniffed (:func:`sniff_csv`; ``sep`` overrides);
- every column is typed (:func:`type_column`): **numeric** (decimal or thousands commas
  too), **boolean** (true/false, yes/no, t/f, y/n: read as 0/1), **date** (one date format
  throughout: read as days since 1970, so a date works as a feature and in ``order_by``) or
  **categorical**;
- the target may be binary or have several classes (:func:`encode_target`);
- unusable rows (a malformed line, a missing target or ordering value, text in a numeric
  column, an infinite number or one beyond ±1e100) are skipped and reported, never fatal.
"""

from __future__ import annotations

import codecs
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
DATE_CHARS = 64  # longer text is no date ("2024-01-31T23:59:59.999999+05:30" is 32)
MIN_CSV_ROWS = 200
HUGE = 1e100
MAX_CLASSES = 50  # more distinct target values than this: a quantity, not a class
CSV_SEPARATORS = ",;\t|"
SNIFF_BYTES = 16384  # the separator is sniffed from the first 16 KiB
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"))  # UTF-32 LE's mark starts with UTF-16 LE's
TRUE_WORDS = frozenset({"true", "yes", "t", "y"})
FALSE_WORDS = frozenset({"false", "no", "f", "n"})
SHOWN = 40  # characters of a name or value from the file that a message shows
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


def cut(value: object) -> str:
    """A name or value from the file as a message shows it: at most SHOWN characters (a
    header line of 50 MB once made a 50 MB error line), control characters escaped (an
    escape sequence in a column name would reach the terminal: rich passes ESC through)."""
    text = str(value)
    text = text if len(text) <= SHOWN else text[:SHOWN - 3] + "..."
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def names(values, limit: int = 10) -> str:
    """"['a', 'b', ... (7 more)]": names or values from the file, cut and counted."""
    values = list(values)
    shown = ", ".join(repr(cut(v)) for v in values[:limit])
    return f"[{shown}{f', ... ({len(values) - limit:,} more)' if len(values) > limit else ''}]"


def describe_kinds(kinds: dict[str, str]) -> str:
    """"6 numeric, 1 date (Date), 2 categorical": what a table's columns were read as."""
    parts = []
    for kind in ("numeric", "boolean", "date", "categorical"):
        columns = [c for c, k in kinds.items() if k == kind]
        if columns:
            more = ", ..." if len(columns) > 4 else ""
            named = f" ({', '.join(map(cut, columns[:4]))}{more})"
            parts.append(f"{len(columns)} {kind}{named if kind != 'numeric' else ''}")
    return ", ".join(parts)


def sniff_csv(path: Path, sep: str | None = None) -> tuple[str, str]:
    """(separator, encoding) of a CSV file: the encoding from its byte-order mark (UTF-8,
    UTF-16, UTF-32), else UTF-16 when every other byte of its start is NUL, else UTF-8 when
    the whole file decodes as UTF-8, else Latin-1, which decodes any bytes; the separator
    that :class:`csv.Sniffer` finds among ``, ; tab |`` in the first 16 KiB (quotes
    respected; its quote patterns take time quadratic in a line's length), else a comma."""
    if sep is not None:
        check_separator(sep)
    with path.open("rb") as handle:
        raw = handle.read(SNIFF_BYTES)
    encoding = _encoding(path, raw)
    if sep is not None:
        return sep, encoding
    text = raw.decode(encoding, errors="ignore")  # a character may be cut at the end
    end = text.rfind("\n")
    sample = text[:end] if end > 0 else text  # whole lines only
    try:
        return csv.Sniffer().sniff(sample, delimiters=CSV_SEPARATORS).delimiter, encoding
    except csv.Error:
        return ",", encoding


def check_separator(sep: str) -> str:
    """``--sep`` as given, or the error that says why it cannot separate fields."""
    if len(sep) != 1:
        raise BanditOpsError(f"--sep must be one character, got {sep!r}")
    if sep in "\r\n\"":
        raise BanditOpsError(f"--sep cannot be {sep!r}: it ends lines or quotes fields")
    return sep


def _encoding(path: Path, head: bytes) -> str:
    """The encoding :func:`sniff_csv` reads a file with (``head``: its first bytes)."""
    for bom, name in BOMS:
        if head.startswith(bom):
            return name
    pairs = len(head) // 2
    if pairs and head[1::2].count(0) > 0.9 * pairs and head[0::2].count(0) < 0.1 * pairs:
        return "utf-16-le"
    if pairs and head[0::2].count(0) > 0.9 * pairs and head[1::2].count(0) < 0.1 * pairs:
        return "utf-16-be"
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:  # the whole file: a Latin-1 "é" on row 50,000 is past any sample
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8-sig"


def encode_target(values: pd.Series, target: str, positive: str | None
                  ) -> tuple[pd.Series, tuple[str, ...], str]:
    """Class codes (NaN where the target is missing), the class names by code, and a note
    on how the classes were read.

    Two values: binary, positive class ``positive``, else 1 / true / yes, else the rarer
    value. More values: one class each, codes in sorted order (numerically when they are
    numbers), unless ``positive`` names one class against the rest.
    """
    whole = values.dropna()
    if (pd.api.types.is_float_dtype(values) and whole.mod(1).eq(0).all()
            and whole.abs().le(2**53).all()):  # 1e20 is whole too, but no int64
        values = values.astype("Int64")  # classes 1, 2, 3 read as floats print as 1.0, ...
    text = values.astype("string").str.strip()
    text = text.mask(text == "")
    counts = text.value_counts()
    present = counts.index.tolist()
    if positive is not None:
        positive = _as_written(str(positive), present, target)
        codes = (text == positive).astype("Float64").mask(text.isna())
        return codes, (f"not {positive}", positive), ""
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
                f"target {target!r}: positive class {cut(rarer)!r} (the rarer value; choose with "
                "--positive)")
    numbers = pd.to_numeric(pd.Series(present), errors="coerce")
    ordered = ([present[i] for i in np.argsort(numbers.to_numpy(), kind="stable")]
               if numbers.notna().all() else sorted(present))
    if len(present) > MAX_CLASSES:
        raise BanditOpsError(
            f"column {target!r} has {len(present):,} distinct values "
            f"({', '.join(map(cut, ordered[:3]))}, ..., {cut(ordered[-1])}): a quantity, not a "
            f"class. The target must have at most {MAX_CLASSES} classes; for a yes/no "
            "question on it, write that column into the table")
    mapping = {value: float(code) for code, value in enumerate(ordered)}
    codes = text.map(mapping).astype("Float64")
    return codes, tuple(ordered), f"target {target!r}: {len(ordered)} classes"


def _as_written(positive: str, present: list[str], target: str) -> str:
    """The target value ``--positive`` names: itself, else the one value it equals as a
    number or but for case, as the file wrote it ("1.0" and "true" read as 1 and True)."""
    if positive in present:
        return positive
    number = pd.to_numeric(pd.Series([positive, *present], dtype=object), errors="coerce")
    same = [value for value, n in zip(present, number[1:], strict=True)
            if value.lower() == positive.strip().lower() or n == number[0]]
    if len(same) == 1:
        return same[0]
    raise BanditOpsError(f"--positive {positive!r} never occurs in column {target!r}; its "
                         f"values include {names(sorted(present))}")


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
    if (numbers.notna() & present).sum() < NUMERIC_SHARE * present.sum():
        numbers = _grouped_numbers(text[present]).reindex(values.index)
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


def _grouped_numbers(text: pd.Series) -> pd.Series:
    """Numbers written with a decimal comma ("3,14", "1.234,5": a spreadsheet's export in
    much of Europe) or with thousands commas ("1,234.5"), when some value says which ("0,5";
    a lone "1,234" could be either) and none says otherwise; else NaN: the column is text."""
    if not text.str.contains(",", regex=False).any():
        return pd.Series(np.nan, index=text.index)  # text, and quick to tell
    decimal = text.str.fullmatch(r"[+-]?(?:[1-9]\d{0,2}(?:\.\d{3})+|\d*),\d+")
    thousands = text.str.fullmatch(r"[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")
    dots_group = text.str.fullmatch(r"[+-]?[1-9]\d{0,2}(?:\.\d{3})+(?:,\d+)?")
    dotted = text.str.contains(".", regex=False)
    if ((decimal & ~thousands).any() and not (thousands & ~decimal).any()
            and not (dotted & ~dots_group).any()):  # "1.5" here would read as 15
        text = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    elif (thousands & ~decimal).any() and not (decimal & ~thousands).any():
        text = text.str.replace(",", "", regex=False)
    else:
        return pd.Series(np.nan, index=text.index)
    return pd.to_numeric(text, errors="coerce")


def _as_dates(text: pd.Series) -> pd.Series | None:
    """Days since 1970 (fractional) when the values are dates in one format, else None.
    The format is guessed from the first value short enough to be a date (guessing takes
    seconds per MB), month first and day first (01/02/2024 is either); the one that reads
    more of the values wins."""
    short = text[text.str.len() <= DATE_CHARS]
    if short.empty or not any(ch.isdigit() for ch in str(short.iloc[0])):
        return None
    first = str(short.iloc[0])
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
        # pandas renames a repeated "y" to "y.1", which would make a copy of the target a
        # feature: the names as written come from the header line itself.
        header = pd.read_csv(path, sep=sep, encoding=encoding, skipinitialspace=True,
                             header=None, nrows=1, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise BanditOpsError(f"cannot read {path} as CSV: {error}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    repeated = sorted({name for names in ([str(c).strip() for c in header.iloc[0]],
                                          list(frame.columns))
                       for name in names if name and names.count(name) > 1})
    if repeated:
        raise BanditOpsError(f"{path} repeats column name(s) {names(repeated)}")
    order_by = list(order_by or [])
    missing = [c for c in [target, *order_by] if c not in frame.columns]
    if missing:
        raise BanditOpsError(
            f"column(s) {missing} not in {path}; columns: {names(frame.columns, 20)}"
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
    labelled = labels.notna()  # rows without a label are dropped: they do not type columns
    for column in list(frame.columns):
        values = frame[column][labelled]
        if values.isna().all():
            frame = frame.drop(columns=column)  # nothing to learn from
            continue
        kind, typed, unusable = type_column(values)
        typed = typed.reindex(frame.index)
        reject(unusable.reindex(frame.index, fill_value=False),
               f"text in numeric column {cut(column)!r}")
        if kind != "categorical":
            numbers = typed.to_numpy(dtype=float)
            reject(pd.Series(np.isinf(numbers), index=frame.index),
                   f"infinite number in {cut(column)!r}")
            # Finite but beyond any measurement: squared by the models' scaling, it overflows.
            reject(pd.Series(np.abs(np.nan_to_num(numbers)) > HUGE, index=frame.index),
                   f"number beyond ±1e100 in {cut(column)!r}")
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
    as_text = [c for c in order_by if kinds[c] == "categorical"]
    if as_text:  # e.g. dates in two formats: "01/02/2024" sorts before "2023-12-31"
        notes.append(f"--order-by {', '.join(as_text)}: not numbers or dates in one format, "
                     "so the rows follow its values as text, alphabetically")
    for column, kind in kinds.items():
        dates = frame[column].dropna()
        if kind == "date" and not order_by and not dates.is_monotonic_increasing:
            notes.append(f"column {cut(column)!r} holds dates the rows are not in order of; "
                         f"replay in time order with --order-by {column}")
    report = CsvReport(rows_read, len(frame), problems, kinds, tuple(notes))
    if len(frame) < MIN_CSV_ROWS or labels.nunique() < 2:
        raise BanditOpsError(
            f"{path} leaves {len(frame)} usable rows in {labels.nunique()} class(es); a "
            f"replay needs at least {MIN_CSV_ROWS} rows and two classes.\n{report.describe()}")
    if frame.shape[1] == 0:
        raise BanditOpsError(f"{path} has no feature columns besides {target!r}")
    order = ("the order of " + ", ".join(
        f"{c} (as text, alphabetically)" if kinds[c] == "categorical" else c
        for c in order_by) if order_by else "file order")
    return Dataset(path.stem, frame, labels, f"{path.name}: predict {target}",
                   classes=classes, order=order, kinds=kinds), report
