"""Each scenario's transformation, checked on a small generated table and on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from banditops.errors import InvalidParameterError
from banditops.simulation.datasets import load_adult
from banditops.simulation.scenarios import (
    CACHE_BUG_OFFSET,
    SCENARIOS,
    ScenarioNotApplicable,
    make_scenario,
    serving_cache_bug,
)


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    n = 2000
    features = pd.DataFrame({"age": rng.integers(18, 90, n),
                             "kind": rng.choice(["a", "a", "b", "c"], n)})
    labels = (features["age"] > 50).astype(int).to_numpy()
    return features, labels


def test_natural_keeps_everything(table):
    features, labels = table
    scenario = make_scenario("natural", "toy", features, labels)
    assert scenario.features is features and np.array_equal(scenario.labels, labels)
    assert not any(scenario.is_faulty_release(i) for i in range(10))


def test_covariate_shift_reorders_rows_gradually_and_keeps_pairs(table):
    features, labels = table
    scenario = make_scenario("covariate-shift", "toy", features, labels, seed=1)
    ages = scenario.features["age"].to_numpy()
    quarters = [ages[i * 500:(i + 1) * 500].mean() for i in range(4)]
    assert quarters == sorted(quarters) and quarters[3] - quarters[0] > 20  # it drifts
    assert 0.05 < np.mean(np.diff(ages) < 0) < 0.5  # gradually, not a plain sort
    # Rows move with their labels: the same multiset of (age, kind, label).
    before = sorted(zip(features["age"], features["kind"], labels, strict=True))
    after = sorted(zip(ages, scenario.features["kind"], scenario.labels, strict=True))
    assert before == after


def test_concept_drift_flips_labels_of_one_segment_after_the_drift(table):
    features, labels = table
    scenario = make_scenario("concept-drift", "toy", features, labels, drift_at=0.6)
    assert scenario.drift_at == 1200 and scenario.segment == "kind == 'a'"
    changed = scenario.labels != labels
    segment = (features["kind"] == "a").to_numpy()
    assert not changed[:1200].any()
    assert np.array_equal(changed[1200:], segment[1200:])


def test_faulty_release_marks_every_third_release_and_breaks_predictions(table):
    features, labels = table
    scenario = make_scenario("faulty-release", "toy", features, labels)
    assert [i for i in range(9) if scenario.is_faulty_release(i)] == [2, 5, 8]
    predictions = np.arange(500)
    served = serving_cache_bug(predictions)
    assert served[0] == CACHE_BUG_OFFSET and sorted(served) == list(predictions)


def test_bad_scenario_arguments(table):
    features, labels = table
    with pytest.raises(InvalidParameterError, match="unknown scenario"):
        make_scenario("chaos", "toy", features, labels)
    with pytest.raises(InvalidParameterError, match="drift_at"):
        make_scenario("concept-drift", "toy", features, labels, drift_at=1.5)
    with pytest.raises(InvalidParameterError, match="faulty_every"):
        make_scenario("faulty-release", "toy", features, labels, faulty_every=1)



def test_an_all_numeric_table_drifts_on_its_most_informative_column():
    rng = np.random.default_rng(4)
    n = 3000
    features = pd.DataFrame({"noise": rng.normal(size=n), "signal": rng.normal(size=n),
                             "constant": np.ones(n)})
    labels = (features["signal"] + 0.3 * rng.normal(size=n) > 0.5).astype(int).to_numpy()
    shifted = make_scenario("covariate-shift", "table", features, labels, seed=1)
    assert shifted.driver == "signal" and "most informative" in shifted.description
    signal = shifted.features["signal"].to_numpy()
    assert signal[:500].mean() < signal[-500:].mean() - 1.0
    drifted = make_scenario("concept-drift", "table", features, labels, drift_at=0.5)
    cut = float(features["signal"].median())
    assert drifted.segment == f"signal > {cut:.4g}"
    changed = drifted.labels != labels
    segment = (features["signal"] > cut).to_numpy()
    assert not changed[:1500].any() and np.array_equal(changed[1500:], segment[1500:])


def test_a_categorical_driver_orders_categories_by_frequency():
    rng = np.random.default_rng(5)
    n = 3000
    colour = rng.choice(["red", "green", "blue"], n, p=[0.6, 0.3, 0.1])
    features = pd.DataFrame({"colour": colour})
    labels = (colour == "blue").astype(int)
    shifted = make_scenario("covariate-shift", "table", features, labels, seed=2)
    assert shifted.driver == "colour"
    head, tail = shifted.features["colour"][:600], shifted.features["colour"][-600:]
    assert (head == "red").mean() > 0.8 and (tail == "blue").mean() > (head == "blue").mean()


def test_several_classes_drift_to_the_next_class(table):
    features, _ = table
    labels = (features["age"].to_numpy() // 30) % 3  # classes 0, 1, 2
    drifted = make_scenario("concept-drift", "toy", features, labels, drift_at=0.5)
    changed = drifted.labels != labels
    assert changed[1000:].any() and not changed[:1000].any()
    assert np.array_equal(drifted.labels[changed], (labels[changed] + 1) % 3)
    assert "move to the next class" in drifted.description


def test_a_scenario_a_table_cannot_support_is_not_applicable():
    n = 1000
    constant = pd.DataFrame({"a": np.zeros(n), "b": ["x"] * n})
    labels = np.arange(n) % 2
    with pytest.raises(ScenarioNotApplicable, match="every feature of this table is constant"):
        make_scenario("covariate-shift", "table", constant, labels)
    with pytest.raises(ScenarioNotApplicable, match="segment of 10-90%"):
        make_scenario("concept-drift", "table", constant, labels)


def test_scenarios_on_real_adult_data(data_dir):
    data = load_adult(data_dir)
    for name in SCENARIOS:
        scenario = make_scenario(name, "adult", data.features, data.labels.to_numpy())
        assert len(scenario.features) == len(scenario.labels) == 48_842
    drift = make_scenario("concept-drift", "adult", data.features, data.labels.to_numpy())
    assert drift.segment == "relationship == 'Husband'"
