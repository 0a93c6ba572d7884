"""Any CSV table as a replay stream: mixed columns, missing values, bad rows reported."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from banditops.errors import BanditOpsError
from banditops.simulation.tables import load_csv, sniff_csv


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({
        "day": rng.permutation(n), "amount": rng.normal(100, 20, n).round(2),
        "city": rng.choice(["paris", "lima", None], n), "outcome": rng.choice(["yes", "no"], n),
    }).astype(object)
    frame.loc[3, "outcome"] = None        # no label
    frame.loc[5, "amount"] = "n/a?"       # text in a numeric column
    frame.loc[7, "day"] = None            # no ordering value
    frame.loc[9, "amount"] = "inf"        # not a finite number
    frame.loc[11, "city"] = None          # a missing feature: kept, imputed by the models
    path = tmp_path / "claims.csv"
    frame.to_csv(path, index=False)
    with path.open("a") as handle:
        handle.write("1,2,3,4,5,6\n")  # a malformed line
    return path


def test_bad_rows_are_reported_and_skipped(table):
    data, report = load_csv(table, "outcome", positive="yes", order_by=["day"])
    assert (report.rows_read, report.rows_used, report.skipped) == (401, 396, 5)
    assert set(report.problems) == {
        "malformed line (wrong number of fields)", "missing target 'outcome'",
        "missing ordering value 'day'", "text in numeric column 'amount'",
        "infinite number in 'amount'"}
    assert report.problems["missing target 'outcome'"] == ["data row 4"]
    text = report.describe()
    assert "396 of 401 rows used; 5 skipped" in text and "data row 6" in text
    assert len(data) == 396 and data.name == "claims"
    assert data.features["day"].is_monotonic_increasing  # ordered by --order-by
    assert data.features["amount"].dtype == float and data.features["city"].isna().sum() > 0
    assert set(data.labels.unique()) == {0, 1}


def test_the_positive_class_is_inferred_from_yes_no(table):
    data, _ = load_csv(table, "outcome")
    explicit, _ = load_csv(table, "outcome", positive="yes")
    assert data.labels.tolist() == explicit.labels.tolist()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"target": "nope"}, "column(s) ['nope'] not in"),
    ({"target": "outcome", "order_by": ["when"]}, "column(s) ['when'] not in"),
    ({"target": "outcome", "positive": "maybe"}, "--positive 'maybe' never occurs"),
    ({"target": "day"}, "399 distinct values (0, 1, 2, ..., 399): a quantity"),
    ({"target": "outcome", "order_by": ["outcome"]}, "cannot use the target column"),
])
def test_user_mistakes_get_one_clear_message(table, kwargs, message):
    with pytest.raises(BanditOpsError) as error:
        load_csv(table, **kwargs)
    assert message in str(error.value)


def test_a_two_valued_target_takes_the_rarer_value_as_positive_unless_told(table):
    data, report = load_csv(table, "city")
    common, rarer = data.classes
    positives = int(data.labels.sum())
    assert positives < len(data) - positives and {common, rarer} == {"paris", "lima"}
    assert "positive class" in report.notes[0] and rarer in report.notes[0]
    share = 100 * positives / len(data)  # the run and the report name the inferred class
    assert data.describe_classes() == f"{positives:,} positive ({rarer!r}, {share:.1f}%)"
    told, _ = load_csv(table, "city", positive=common)
    assert int(told.labels.sum()) == len(data) - positives


def test_a_target_with_several_classes_is_coded_in_sorted_order(tmp_path):
    rng = np.random.default_rng(1)
    grades = rng.choice(["10", "9", "2"], 600)
    path = tmp_path / "grades.csv"
    pd.DataFrame({"x": rng.normal(size=600), "grade": grades}).to_csv(path, index=False)
    data, report = load_csv(path, "grade")
    assert data.classes == ("2", "9", "10")  # numerically, not "10" < "2"
    assert not data.binary and "3 classes" in report.notes[0]
    assert (data.labels.to_numpy() == pd.Series(grades).map(
        {"2": 0, "9": 1, "10": 2}).to_numpy()).all()
    assert data.describe_classes().startswith("3 classes")
    one_vs_rest, _ = load_csv(path, "grade", positive="9")
    assert one_vs_rest.binary and int(one_vs_rest.labels.sum()) == (grades == "9").sum()


def test_columns_are_typed_numeric_boolean_date_or_categorical(tmp_path):
    rng = np.random.default_rng(2)
    n = 500
    days = pd.date_range("2024-01-01", periods=n, freq="D")
    frame = pd.DataFrame({
        "when": rng.permutation(days.strftime("%Y-%m-%d").to_numpy()),
        "stamp": days.strftime("%d/%m/%Y %H:%M").to_numpy(),
        "member": rng.choice(["Yes", "No", ""], n),
        "flag": rng.choice([True, False], n),
        "code": rng.choice(["A1", "B2", "C3"], n),
        "amount": rng.normal(size=n).round(3),
        "y": rng.integers(0, 2, n),
    })
    frame.loc[4, "when"] = "not a date"  # a missing value, not a lost row
    path = tmp_path / "typed.csv"
    frame.to_csv(path, index=False)
    data, report = load_csv(path, "y", order_by=["when"])
    assert data.kinds == {"when": "date", "stamp": "date", "member": "boolean",
                          "flag": "boolean", "code": "categorical", "amount": "numeric"}
    assert "2 date (when, stamp)" in report.describe()
    # A date is days since 1970, so it orders rows in time and serves as a feature.
    when = data.features["when"].to_numpy()
    assert np.all(np.diff(when) > 0) and when[0] == (pd.Timestamp("2024-01-01")
                                                   - pd.Timestamp("1970-01-01")).days
    assert report.rows_used == n - 1  # the row without a date cannot be ordered
    assert set(data.features["member"].dropna()) == {0.0, 1.0}
    assert data.features["member"].isna().sum() == (frame["member"] == "").sum() - (
        frame.loc[4, "member"] == "")
    assert pd.api.types.is_float_dtype(data.features["stamp"])
    _, unordered = load_csv(path, "y")
    assert "replay in time order with --order-by when" in unordered.describe()
    assert "--order-by stamp" not in unordered.describe()  # the file follows that one


def test_too_few_usable_rows_says_why(tmp_path):
    path = tmp_path / "tiny.csv"
    pd.DataFrame({"x": range(50), "y": [0, 1] * 25}).to_csv(path, index=False)
    with pytest.raises(BanditOpsError, match="leaves 50 usable rows"):
        load_csv(path, "y")
    with pytest.raises(BanditOpsError, match="not found"):
        load_csv(tmp_path / "missing.csv", "y")


def _bank_like(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"age": rng.integers(18, 90, n),
                         "job": rng.choice(["admin.", "blue-collar", "self; employed"], n),
                         "balance": rng.normal(1000, 300, n).round(2),
                         "y": rng.choice(["no", "yes"], n)})


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_the_separator_is_sniffed_with_quotes_respected(tmp_path, sep):
    """The UCI bank-marketing file is ';'-separated with quoted strings (one holding ';')."""
    frame = _bank_like()
    path = tmp_path / "bank.csv"
    frame.to_csv(path, sep=sep, index=False, quoting=1)  # csv.QUOTE_ALL
    data, report = load_csv(path, "y")
    assert list(data.features.columns) == ["age", "job", "balance"]
    assert report.rows_used == len(frame)
    assert set(data.features["job"]) == {"admin.", "blue-collar", "self; employed"}
    assert pd.api.types.is_numeric_dtype(data.features["age"])
    assert int(data.labels.sum()) == (frame["y"] == "yes").sum()


def test_latin_1_files_and_an_explicit_separator(tmp_path):
    frame = _bank_like()
    frame["job"] = frame["job"].str.replace("admin.", "Café")
    path = tmp_path / "latin.csv"
    frame.to_csv(path, sep=";", index=False, encoding="latin-1")
    data, _ = load_csv(path, "y")
    assert "Café" in set(data.features["job"])
    data, _ = load_csv(path, "y", sep=";")
    assert data.features.shape[1] == 3
    with pytest.raises(BanditOpsError, match="one character"):
        load_csv(path, "y", sep=";;")
    with pytest.raises(BanditOpsError, match="not in"):  # the wrong separator: one column
        load_csv(path, "y", sep=",")
    for sep in ("\n", "\r", '"'):  # pandas fails on these with a ValueError of its own
        with pytest.raises(BanditOpsError, match="ends lines or quotes fields"):
            load_csv(path, "y", sep=sep)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf_16_and_32_files_with_or_without_a_byte_order_mark(tmp_path, encoding):
    frame = _bank_like()
    frame["job"] = frame["job"].str.replace("admin.", "Zürich")
    path = tmp_path / "wide_chars.csv"
    frame.to_csv(path, sep=";", index=False, encoding=encoding)
    data, report = load_csv(path, "y")
    assert list(data.features.columns) == ["age", "job", "balance"]
    assert report.rows_used == len(frame) and "Zürich" in set(data.features["job"])


def test_a_latin_1_byte_far_into_the_file_still_reads_as_latin_1(tmp_path):
    frame = _bank_like(3000)  # about 80 KiB: the "é" is past any sample of the start
    frame.loc[2900, "job"] = "Café"
    path = tmp_path / "late.csv"
    frame.to_csv(path, index=False, encoding="latin-1")
    data, _ = load_csv(path, "y")
    assert data.features["job"].iloc[2900] == "Café"


def test_a_repeated_column_name_is_refused_though_pandas_renames_it(tmp_path):
    frame = _bank_like()
    frame["copy"] = frame["y"]
    path = tmp_path / "twice.csv"
    frame.rename(columns={"copy": "y"}).to_csv(path, index=False)  # header: ...,y,y
    with pytest.raises(BanditOpsError, match=r"repeats column name\(s\) \['y'\]"):
        load_csv(path, "y")  # not a feature "y.1" that copies the label


def test_a_positive_class_as_the_file_writes_it(tmp_path):
    """pandas reads "true" as True and "1.0" as 1.0: --positive true and 1.0 still match."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=400)
    for values, positive in ((np.where(x > 0, "true", "false"), "true"),
                             (np.where(x > 0, "1.0", "0.0"), "1.0"),
                             (np.where(x > 0, 1e20, 0.0), None)):  # whole, but no int64
        path = tmp_path / "flags.csv"
        pd.DataFrame({"x": x, "y": values}).to_csv(path, index=False)
        data, _ = load_csv(path, "y", positive=positive)
        assert data.binary and int(data.labels.sum()) == (x > 0).sum()
    with pytest.raises(BanditOpsError, match="--positive '2' never occurs"):
        load_csv(path, "y", positive="2")


def test_ordering_by_a_text_column_says_it_is_alphabetical(tmp_path):
    rng = np.random.default_rng(5)
    days = pd.date_range("2024-01-01", periods=400, freq="D")
    stamps = [d.strftime("%Y-%m-%d" if i % 2 else "%d/%m/%Y") for i, d in enumerate(days)]
    path = tmp_path / "two_formats.csv"
    pd.DataFrame({"when": stamps, "x": rng.normal(size=400),
                  "y": rng.integers(0, 2, 400)}).to_csv(path, index=False)
    data, report = load_csv(path, "y", order_by=["when"])
    assert data.kinds["when"] == "categorical"
    assert "--order-by when: not numbers or dates in one format" in report.describe()
    assert data.order == "the order of when (as text, alphabetically)"


def test_a_line_that_sends_the_sniffer_quadratic_is_sniffed_in_seconds(tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_text("x,y\n" + ', "a' * 16_000 + "\n" + "1,0\n" * 300)
    started = time.perf_counter()
    assert sniff_csv(path) == (",", "utf-8-sig")
    assert time.perf_counter() - started < 8  # 19 s when it sniffed the first 64 KiB


def test_numbers_with_decimal_or_thousands_commas_are_numbers(tmp_path):
    """A spreadsheet exported in much of Europe: ';' between fields, ',' before decimals."""
    rng = np.random.default_rng(6)
    price = rng.normal(1500, 400, 400).round(2)
    frame = pd.DataFrame({
        "price": [f"{v:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")
                  for v in price],  # 1.234,56
        "amount": [f"{v:,.1f}" for v in price],  # 1,234.6
        "code": rng.choice(["1,5", "2,5 kg", "n/a"], 400),  # commas, but not numbers
        "y": rng.integers(0, 2, 400)})
    path = tmp_path / "european.csv"
    frame.to_csv(path, sep=";", index=False)
    data, _ = load_csv(path, "y")
    assert data.kinds == {"price": "numeric", "amount": "numeric", "code": "categorical"}
    assert np.allclose(data.features["price"], price)
    assert np.allclose(data.features["amount"], price, atol=0.051)


def test_rows_without_a_label_do_not_decide_how_columns_are_read(tmp_path):
    """Half the lines use ';' in a ',' file: each is one field, so no label, and its text
    once landed in 'x' and made that column categorical for the rows that were kept."""
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"x": rng.normal(size=600).round(3), "y": rng.integers(0, 2, 600)})
    lines = frame.to_csv(index=False).splitlines()
    text = [lines[0], *(line.replace(",", ";") if i % 2 else line
                        for i, line in enumerate(lines[1:]))]
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(text) + "\n")
    data, report = load_csv(path, "y", sep=",")
    assert report.rows_used == 300 and "missing target 'y'" in report.problems
    assert data.kinds == {"x": "numeric"}
    assert np.allclose(data.features["x"], frame["x"].iloc[::2])


def test_messages_show_names_from_the_file_cut_short(tmp_path):
    """A 50 MB header line was a 50 MB error line (a 200 MB one ran out of memory)."""
    path = tmp_path / "long.csv"
    names = ["A" * 1_000_000, *(f"c{i}" for i in range(99))]
    path.write_text(",".join(names) + "\n" + "1," * 99 + "1\n")
    with pytest.raises(BanditOpsError) as error:
        load_csv(path, "y")
    message = str(error.value)
    assert len(message) < 500 and message.endswith("'c18', ... (80 more)]")
    assert f"['{'A' * 37}...', 'c0'," in message


def test_a_long_first_value_is_not_taken_for_a_date(tmp_path):
    """Guessing a date format from a value takes seconds per MB: a 100 MB first field of
    digits and spaces stalled the load for minutes."""
    rng = np.random.default_rng(8)
    days = pd.date_range("2024-01-01", periods=400, freq="D").strftime("%Y-%m-%d")
    frame = pd.DataFrame({"when": days, "note": ["1 " * 10] * 400, "y": rng.integers(0, 2, 400)})
    frame.loc[0, "when"] = "1 " * 500_000  # 1 MB: about 8 s to guess from, before
    frame.loc[0, "note"] = "1 " * 500_000
    path = tmp_path / "long_first.csv"
    frame.to_csv(path, index=False)
    started = time.perf_counter()
    data, _ = load_csv(path, "y")
    assert time.perf_counter() - started < 4
    assert data.kinds == {"when": "date", "note": "categorical"}


def test_control_characters_in_names_are_shown_escaped(tmp_path):
    rng = np.random.default_rng(9)
    path = tmp_path / "escapes.csv"
    pd.DataFrame({"kind\x1b[2J": rng.choice(["a", "b"], 300),
                  "y": rng.integers(0, 2, 300)}).to_csv(path, index=False)
    _, report = load_csv(path, "y")
    assert "1 categorical (kind\\x1b[2J)" in report.describe()
    assert "\x1b" not in report.describe()


def test_numbers_beyond_any_measurement_are_rejected_not_overflowed(tmp_path):
    """1e308 is finite, but a model's scaling squares it into infinity."""
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"x": rng.normal(size=300).astype(object), "y": [0, 1] * 150})
    frame.loc[7, "x"] = "1e308"
    frame.loc[8, "x"] = "-2e150"
    path = tmp_path / "huge.csv"
    frame.to_csv(path, index=False)
    data, report = load_csv(path, "y")
    assert report.problems["number beyond ±1e100 in 'x'"] == ["data row 8", "data row 9"]
    assert len(data) == 298 and data.features["x"].abs().max() < 10
