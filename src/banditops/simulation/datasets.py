"""The two real datasets of the study, found on disk, verified by checksum, loaded in order.

Where the files are looked for, in order: the ``data_dir`` argument (the CLI's
``--data-dir``), the ``BANDITOPS_DATA_DIR`` environment variable, then the user cache
directory (``$XDG_CACHE_HOME/banditops`` or ``~/.cache/banditops``). Adult, which UCI
publishes, is downloaded into the cache and verified when it is found nowhere and the
network allows. The fraud data has no authoritative download address: it must be put
there by hand. Either way, a missing or corrupt file gives one message saying where we
looked and what to do.
"""

from __future__ import annotations

import csv
import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from banditops.errors import BanditOpsError

ADULT_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]
SHA256 = {
    "adult/adult.data": "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    "adult/adult.test": "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
    "vehicle-insurance-fraud/fraud_oracle.csv":
        "8bb5870f82bb78cceb2bee7747c68c2a8d617af4e22b2de55fbb40c214883255",
}
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class DataNotFoundError(BanditOpsError, FileNotFoundError):
    """A dataset file is missing or does not match its published checksum."""


@dataclass(frozen=True)
class Dataset:
    """A binary classification stream: features in time order and 0/1 labels."""

    name: str
    features: pd.DataFrame
    labels: pd.Series  # 0/1, aligned with features
    description: str

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> Dataset:
        return Dataset(self.name, self.features.iloc[:n].reset_index(drop=True),
                       self.labels.iloc[:n].reset_index(drop=True), self.description)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "banditops"


def search_dirs(data_dir: str | Path | None = None) -> list[Path]:
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir))
    if os.environ.get("BANDITOPS_DATA_DIR"):
        dirs.append(Path(os.environ["BANDITOPS_DATA_DIR"]))
    dirs.append(cache_dir())
    return dirs


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate(relative: str, data_dir: str | Path | None = None, *,
           download_url: str | None = None) -> Path:
    """Path of a verified copy of ``relative`` (e.g. ``adult/adult.data``), or a clear error."""
    looked, corrupt = [], []
    for directory in search_dirs(data_dir):
        path = directory / relative
        looked.append(str(path))
        if path.is_file():
            if sha256(path) == SHA256[relative]:
                return path
            corrupt.append(str(path))
    if download_url is not None:
        target = cache_dir() / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(target.suffix + ".part")
            urllib.request.urlretrieve(download_url, partial)
            if sha256(partial) == SHA256[relative]:
                partial.replace(target)
                return target
            partial.unlink()
            corrupt.append(f"{download_url} (downloaded copy)")
        except OSError as error:
            looked.append(f"{download_url} (download failed: {error})")
    problem = (f"{relative} does not match its published sha256 at: {', '.join(corrupt)}"
               if corrupt else f"{relative} was not found")
    raise DataNotFoundError(
        f"{problem}.\nLooked in: {'; '.join(looked)}.\n"
        f"Put the original file there, or point --data-dir / BANDITOPS_DATA_DIR at the folder "
        f"that holds {relative.split('/')[0]}/ (expected sha256 {SHA256[relative][:16]}...)."
    )


def load_adult(data_dir: str | Path | None = None) -> Dataset:
    """UCI Census Income: adult.data then adult.test, in file order; label 1 means >50K."""
    frames = []
    for part, skip in (("adult.data", 0), ("adult.test", 1)):
        path = locate(f"adult/{part}", data_dir, download_url=ADULT_URL + part)
        frame = pd.read_csv(path, header=None, names=ADULT_COLUMNS, skiprows=skip,
                            sep=r",\s*", engine="python", na_values="?", skip_blank_lines=True)
        frames.append(frame.dropna(how="all"))
    data = pd.concat(frames, ignore_index=True)
    income = data.pop("income").str.rstrip(".")
    labels = (income == ">50K").astype(int)
    return Dataset("adult", data, labels,
                   "UCI Census Income (Kohavi, 1996): 48,842 people, predict income >50K")


def load_fraud(data_dir: str | Path | None = None) -> Dataset:
    """Vehicle insurance claims 1994-1996, in time order (Year, Month, WeekOfMonth)."""
    path = locate("vehicle-insurance-fraud/fraud_oracle.csv", data_dir)
    data = pd.read_csv(path)
    month = data["Month"].map({m: i for i, m in enumerate(MONTHS)})
    order = pd.DataFrame({"year": data["Year"], "month": month, "week": data["WeekOfMonth"],
                          "row": range(len(data))})
    data = data.iloc[order.sort_values(["year", "month", "week", "row"]).index]
    data = data.reset_index(drop=True)
    labels = data.pop("FraudFound_P").astype(int)
    data = data.drop(columns=["PolicyNumber"])  # an identifier, not a feature
    return Dataset("vehicle-insurance-fraud", data, labels,
                   "Vehicle insurance claims 1994-1996 (Phua et al., 2004): predict fraud")


LOADERS = {"adult": load_adult, "vehicle-insurance-fraud": load_fraud}


def load(name: str, data_dir: str | Path | None = None) -> Dataset:
    try:
        loader = LOADERS[name]
    except KeyError:
        raise BanditOpsError(f"unknown dataset {name!r}; known: {sorted(LOADERS)}") from None
    return loader(data_dir)


@dataclass(frozen=True)
class CsvReport:
    """What loading a user's table skipped, and why (a few examples of each reason)."""

    rows_read: int
    rows_used: int
    problems: dict[str, list[str]]  # reason -> examples

    @property
    def skipped(self) -> int:
        return self.rows_read - self.rows_used

    def describe(self) -> str:
        if not self.skipped:
            return f"{self.rows_used:,} rows, none skipped"
        lines = [f"{self.rows_used:,} of {self.rows_read:,} rows used; {self.skipped:,} skipped:"]
        for reason, examples in self.problems.items():
            lines.append(f"  - {reason}: e.g. {'; '.join(examples[:3])}")
        return "\n".join(lines)


NUMERIC_SHARE = 0.9  # a text column whose values are at least this often numbers is numeric
MIN_CSV_ROWS = 200


def _binary_target(values: pd.Series, target: str, positive: str | None) -> pd.Series:
    """0/1 labels (NaN where the target is missing); positive class from ``positive``."""
    text = values.astype("string").str.strip()
    text = text.mask(text == "")
    present = text.dropna().unique().tolist()
    if positive is not None:
        if str(positive) not in present:
            raise BanditOpsError(
                f"--positive {positive!r} never occurs in column {target!r}; its values "
                f"include {sorted(present)[:10]}")
        return (text == str(positive)).astype("Float64").mask(text.isna())
    if len(present) != 2:
        raise BanditOpsError(
            f"column {target!r} has {len(present)} distinct values ({sorted(present)[:10]}); "
            "the target must be binary, or name the positive class with --positive VALUE")
    for positive_value in ("1", "1.0", "true", "True", "yes", "Yes"):
        if positive_value in present:
            return (text == positive_value).astype("Float64").mask(text.isna())
    raise BanditOpsError(
        f"column {target!r} has values {sorted(present)}; say which is the positive class "
        "with --positive VALUE")


CSV_SEPARATORS = ",;\t|"


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


def load_csv(path: str | Path, target: str, *, positive: str | None = None,
             order_by: list[str] | None = None,
             sep: str | None = None) -> tuple[Dataset, CsvReport]:
    """Any table as a binary stream: mixed columns, missing values imputed later by the models.

    The separator and encoding are sniffed (:func:`sniff_csv`) unless ``sep`` is given.

    Unusable rows (a malformed line, a missing target or ordering value, text in a numeric
    column, an infinite number) are skipped and reported, never fatal. Rows are replayed in
    file order, or sorted by ``order_by`` (as numbers when they are numbers, else as text).
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
        frame = pd.read_csv(path, sep=sep, encoding=encoding, engine="python",
                            on_bad_lines=bad_line, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise BanditOpsError(f"cannot read {path} as CSV: {error}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    order_by = list(order_by or [])
    missing = [c for c in [target, *order_by] if c not in frame.columns]
    if missing:
        raise BanditOpsError(f"column(s) {missing} not in {path}; columns: {list(frame.columns)}")
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

    labels = _binary_target(frame.pop(target), target, positive)
    reject(labels.isna(), f"missing target {target!r}")
    for column in order_by:
        reject(frame[column].isna(), f"missing ordering value {column!r}")
    for column in list(frame.columns):
        values = frame[column]
        if values.isna().all():
            frame = frame.drop(columns=column)  # nothing to learn from
            continue
        if pd.api.types.is_numeric_dtype(values):
            reject(pd.Series(np.isinf(values.astype(float)), index=frame.index),
                   f"infinite number in {column!r}")
            continue
        text = values.astype("string").str.strip()
        numbers = pd.to_numeric(text, errors="coerce")
        present = text.notna() & (text != "")
        if present.any() and (numbers.notna() & present).sum() >= NUMERIC_SHARE * present.sum():
            reject(present & numbers.isna(), f"text in numeric column {column!r}")
            reject(pd.Series(np.isinf(numbers.astype(float)), index=frame.index).fillna(False),
                   f"infinite number in {column!r}")
            frame[column] = numbers.astype(float)
        else:
            frame[column] = text.astype(object).where(present, np.nan)
    rows_read = len(frame) + len(malformed)
    frame, labels = frame[usable], labels[usable].astype(int)
    if order_by:
        keys = pd.DataFrame({c: (pd.to_numeric(frame[c], errors="coerce")
                                 if pd.to_numeric(frame[c], errors="coerce").notna().all()
                                 else frame[c].astype(str)) for c in order_by})
        order = keys.sort_values(order_by, kind="stable").index
        frame, labels = frame.loc[order], labels.loc[order]
    frame, labels = frame.reset_index(drop=True), labels.reset_index(drop=True)
    report = CsvReport(rows_read, len(frame), problems)
    if len(frame) < MIN_CSV_ROWS or labels.nunique() < 2:
        raise BanditOpsError(
            f"{path} leaves {len(frame)} usable rows with {int(labels.sum())} positives; a "
            f"replay needs at least {MIN_CSV_ROWS} rows and both classes.\n{report.describe()}")
    if frame.shape[1] == 0:
        raise BanditOpsError(f"{path} has no feature columns besides {target!r}")
    return Dataset(path.stem, frame, labels, f"{path.name}: predict {target}"), report
