"""The continuous-training pipeline: schedule, no label from the future, faulty releases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from banditops.errors import InvalidParameterError
from banditops.simulation.models import FAMILIES
from banditops.simulation.pipeline import build_releases, release_rows
from banditops.simulation.scenarios import ScenarioNotApplicable, make_scenario


@pytest.fixture
def scenario():
    rng = np.random.default_rng(3)
    n = 3000
    features = pd.DataFrame({"x": rng.normal(size=n), "noise": rng.normal(size=n),
                             "kind": rng.choice(["a", "b"], n)})
    labels = (features["x"] + 0.3 * rng.normal(size=n) > 0).astype(int).to_numpy()
    return make_scenario("faulty-release", "toy", features, labels)


def test_schedule_windows_and_scores(scenario):
    releases = build_releases(scenario, chunk_size=300, release_every=2, train_window=1000,
                              delay=40)
    assert [r.row for r in releases] == release_rows(3000, 300, 2) == [300, 900, 1500, 2100, 2700]
    assert [r.family for r in releases] == [*FAMILIES, FAMILIES[0]]
    for release in releases:
        start, split = release.train_rows
        v_start, v_end = release.validation_rows
        assert split == v_start and v_end == release.row - 40  # only arrived labels
        assert release.row - 40 - start <= 1000
        assert len(release.predictions) == 3000 - release.row
    healthy = [r for r in releases if not r.faulty]
    assert all(r.validation_score > 0.7 for r in releases)  # offline, all look good (~0.5 if not)
    for release in healthy:
        served = release.predictions
        assert (served == scenario.labels[release.row:]).mean() > 0.8


def test_faulty_releases_are_broken_only_in_production(scenario):
    releases = build_releases(scenario, chunk_size=300, release_every=2, train_window=1000)
    faulty = [r for r in releases if r.faulty]
    assert [r.index for r in faulty] == [2]
    served_accuracy = (faulty[0].predictions == scenario.labels[faulty[0].row:]).mean()
    assert faulty[0].validation_score > 0.8 and served_accuracy < 0.65


def test_bad_pipeline_arguments(scenario):
    with pytest.raises(InvalidParameterError, match="chunk_size"):
        build_releases(scenario, chunk_size=10)
    with pytest.raises(InvalidParameterError, match="delay"):
        build_releases(scenario, chunk_size=300, delay=300)
    with pytest.raises(InvalidParameterError, match="unknown model families"):
        build_releases(scenario, chunk_size=300, families=["svm"])


def test_releases_wait_until_the_labels_hold_two_classes(scenario):
    """A stream that opens with one class only (ordered by a strong predictor, say): the
    releases due before both classes arrive are skipped, later ones go ahead."""
    labels = scenario.labels.copy()
    labels[:1000] = 0
    opening = make_scenario("faulty-release", "toy", scenario.features, labels)
    releases = build_releases(opening, chunk_size=300, release_every=2, train_window=1000,
                              delay=40)
    assert [r.row for r in releases] == [1500, 2100, 2700]  # 300 and 900 saw one class
    assert [r.name for r in releases] == ["v1-logistic-regression", "v2-gradient-boosting",
                                         "v3-random-forest"]
    assert [r.faulty for r in releases] == [False, False, True]
    grouped = make_scenario("natural", "toy", scenario.features, np.sort(scenario.labels))
    with pytest.raises(ScenarioNotApplicable, match="grouped by the target"):
        build_releases(grouped, chunk_size=300, release_every=2, train_window=500, delay=40)
