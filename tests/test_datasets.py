"""Loaders on the real shared data, and the messages for missing or corrupt files."""

from __future__ import annotations

import shutil

import pytest

from banditops.simulation.datasets import DataNotFoundError, load_adult, load_fraud


def test_adult_rows_positives_and_order(data_dir):
    data = load_adult(data_dir)
    assert len(data) == 48_842
    assert int(data.labels.sum()) == 11_687  # 7,841 in adult.data + 3,846 in adult.test
    assert data.features.shape[1] == 14
    assert data.features.iloc[0]["age"] == 39  # file order: adult.data first
    assert data.features.iloc[32_561]["age"] == 25  # then adult.test, header line skipped
    assert data.features["workclass"].isna().sum() > 0  # "?" is missing, not a category


def test_fraud_rows_positives_and_time_order(data_dir):
    data = load_fraud(data_dir)
    assert len(data) == 15_420
    assert int(data.labels.sum()) == 923
    assert "PolicyNumber" not in data.features and "FraudFound_P" not in data.features
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    key = list(zip(data.features["Year"], data.features["Month"].map(months.index),
                   data.features["WeekOfMonth"], strict=True))
    assert key == sorted(key)
    assert key[0][0] == 1994 and key[-1][0] == 1996


def test_corrupt_file_gives_one_clear_message(data_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("BANDITOPS_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    target = tmp_path / "data" / "vehicle-insurance-fraud"
    target.mkdir(parents=True)
    shutil.copy(data_dir / "vehicle-insurance-fraud" / "fraud_oracle.csv", target)
    with (target / "fraud_oracle.csv").open("a") as handle:
        handle.write("tampered\n")
    with pytest.raises(DataNotFoundError) as error:
        load_fraud(tmp_path / "data")
    message = str(error.value)
    assert "does not match its published sha256" in message
    assert str(target / "fraud_oracle.csv") in message
    assert "--data-dir" in message


def test_missing_file_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("BANDITOPS_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError) as error:
        load_fraud(tmp_path / "nowhere")
    message = str(error.value)
    assert "was not found" in message
    assert str(tmp_path / "nowhere") in message and str(tmp_path / "cache") in message
