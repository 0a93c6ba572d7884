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

import hashlib
import os
import urllib.request
from dataclasses import dataclass, field
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
    """A classification stream: features in time order and integer class codes.

    ``labels`` are codes ``0..len(classes)-1``; a binary task has codes 0 (negative) and
    1 (positive). ``kinds`` says how each feature column was read (numeric, categorical,
    boolean, date); ``order`` how the rows are ordered in time.
    """

    name: str
    features: pd.DataFrame
    labels: pd.Series  # class codes, aligned with features
    description: str
    classes: tuple[str, ...] = ("0", "1")
    order: str = "file order"
    kinds: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    def class_shares(self) -> np.ndarray:
        """Share of rows in each class, by code."""
        counts = np.bincount(self.labels.to_numpy(dtype=int), minlength=len(self.classes))
        return counts / max(1, counts.sum())

    def describe_classes(self) -> str:
        """"2,128 positive ('fraud', 6.0%)" for a binary task (the class named: it may have
        been inferred), else the classes and the largest share."""
        shares = self.class_shares()
        if self.binary:
            positives = int(self.labels.sum())
            name = self.classes[1] if len(self.classes[1]) <= 40 else self.classes[1][:37] + "..."
            return f"{positives:,} positive ({name!r}, {100 * shares[1]:.1f}%)"
        largest = int(shares.argmax())
        return (f"{len(self.classes)} classes (largest: {self.classes[largest]!r}, "
                f"{100 * shares[largest]:.1f}%)")

    def head(self, n: int) -> Dataset:
        return Dataset(self.name, self.features.iloc[:n].reset_index(drop=True),
                       self.labels.iloc[:n].reset_index(drop=True), self.description,
                       self.classes, self.order, self.kinds)


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
                   "UCI Census Income (Kohavi, 1996): 48,842 people, predict income >50K",
                   classes=("<=50K", ">50K"), order="file order (adult.data, then adult.test)")


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
                   "Vehicle insurance claims 1994-1996 (Phua et al., 2004): predict fraud",
                   classes=("no fraud", "fraud"), order="claim time (year, month, week)")


LOADERS = {"adult": load_adult, "vehicle-insurance-fraud": load_fraud}


def load(name: str, data_dir: str | Path | None = None) -> Dataset:
    try:
        loader = LOADERS[name]
    except KeyError:
        raise BanditOpsError(f"unknown dataset {name!r}; known: {sorted(LOADERS)}") from None
    return loader(data_dir)
