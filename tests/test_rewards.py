"""Vectorised rewards agree with the per-request ones, and the decision threshold pays."""

from __future__ import annotations

import numpy as np
import pytest

from banditops.errors import InvalidLabelError, InvalidParameterError, InvalidRewardError
from banditops.rewards import accuracy, check_label, cost_matrix, decision_threshold, row_rewards

LABELS = np.array([0, 0, 1, 1])
PREDICTIONS = np.array([0, 1, 0, 1])


@pytest.mark.parametrize("reward", [accuracy, cost_matrix(tp=1, fp=0.95, fn=0, tn=1),
                                    lambda y, p: 0.25 + 0.5 * (y == p)])
def test_row_rewards_match_the_scalar_reward(reward):
    expected = [reward(y, p) for y, p in zip(LABELS, PREDICTIONS, strict=True)]
    assert row_rewards(reward, LABELS, PREDICTIONS).tolist() == pytest.approx(expected)


def test_row_rewards_check_shapes_and_values():
    with pytest.raises(InvalidParameterError, match="differ in shape"):
        row_rewards(accuracy, [1, 0], [1])
    with pytest.raises(InvalidRewardError):
        row_rewards(lambda y, p: 2.0, [1], [1])


def test_the_threshold_is_where_flagging_starts_to_pay():
    fraud = cost_matrix(tp=1, fp=0.95, fn=0, tn=1)
    threshold = decision_threshold(fraud)
    for p in (threshold - 0.01, threshold + 0.01):
        flag = p * fraud.tp + (1 - p) * fraud.fp
        pass_ = p * fraud.fn + (1 - p) * fraud.tn
        assert (flag > pass_) == (p > threshold)
    assert decision_threshold(accuracy) == 0.5


FRAUD = cost_matrix(tp=1, fp=0.95, fn=0, tn=1)


@pytest.mark.parametrize(("label", "prediction", "named"), [
    ("no", 0, "label 'no'"),  # truthy, but not a class: it used to count as positive
    ("", 0, "label ''"), ([1], 1, "label [1]"), ("1", 1, "label '1'"),
    (True, 1, "label True"), (1, False, "prediction False"), (1.0, 1, "label 1.0"),
    (1, float("nan"), "prediction nan"), (None, 0, "label None"), (2, 1, "label 2"),
    (np.bool_(True), 1, "label np.True_"), (1, np.float64(1.0), "prediction np.float64"),
])
def test_cost_matrix_refuses_labels_it_does_not_know(label, prediction, named):
    with pytest.raises(InvalidLabelError, match=r"known classes \[0, 1\]") as caught:
        FRAUD(label, prediction)
    assert named in str(caught.value)
    assert isinstance(caught.value, InvalidParameterError)


def test_cost_matrix_with_named_classes():
    churn = cost_matrix(tp=1, fp=0.8, fn=0, tn=1, positive="yes", negative="no")
    assert churn.classes == ("no", "yes")
    assert [churn(y, p) for y, p in [("yes", "yes"), ("yes", "no"), ("no", "yes"),
                                     ("no", "no")]] == [1.0, 0.0, 0.8, 1.0]
    for label in (1, 0, True, "Yes", np.str_("maybe")):
        with pytest.raises(InvalidLabelError, match=r"known classes \['no', 'yes'\]"):
            churn(label, "no")
    assert churn(np.str_("yes"), "yes") == 1.0  # numpy strings are strings
    adult = cost_matrix(tp=1, fp=0.5, fn=0, tn=1, positive=">50K", negative="<=50K")
    with pytest.raises(InvalidLabelError):
        adult(1, ">50K")  # a 0/1 label on a string deployment never silently scores 0


def test_cost_matrix_compares_numpy_integers_as_ints_and_bools_as_bools():
    assert FRAUD(np.int64(1), np.int8(0)) == 0.0
    assert FRAUD(np.uint8(0), 1) == 0.95
    flags = cost_matrix(tp=1, fp=0.5, fn=0, tn=1, positive=True, negative=False)
    assert flags(True, np.bool_(False)) == 0.0
    with pytest.raises(InvalidLabelError):
        flags(1, True)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"positive": 1, "negative": 1}, "must differ"),
    ({"positive": [1]}, "JSON scalar"),
    ({"positive": float("nan")}, "JSON scalar"),
    ({"tp": "1"}, "tp must be a number"),
    ({"fn": 2}, r"fn must be a reward in \[0, 1\]"),
])
def test_cost_matrix_parameters_are_checked(kwargs, message):
    cells = {"tp": 1, "fp": 0.9, "fn": 0, "tn": 1}
    with pytest.raises(InvalidParameterError, match=message):
        cost_matrix(**{**cells, **kwargs})


def test_many_compares_with_the_positive_class_and_refuses_unknown_entries():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 2, 1000), rng.integers(0, 2, 1000).astype(np.int8)
    expected = [FRAUD(int(y), int(p)) for y, p in zip(labels, predictions, strict=True)]
    assert FRAUD.many(labels, predictions).tolist() == expected
    with pytest.raises(InvalidLabelError, match="label 2"):
        FRAUD.many(np.array([0, 1, 2]), np.array([0, 1, 1]))
    with pytest.raises(InvalidLabelError, match="prediction -1"):
        FRAUD.many(np.array([0, 1]), np.array([-1, 1]))
    with pytest.raises(InvalidLabelError, match="label '0' \\(str\\)"):
        FRAUD.many(np.array(["0", "1"]), np.array([0, 1]))
    with pytest.raises(InvalidLabelError, match="label True"):
        FRAUD.many(np.array([True, False]), np.array([0, 1]))
    churn = cost_matrix(tp=1, fp=0.8, fn=0, tn=1, positive="yes", negative="no")
    assert churn.many(np.array(["yes", "no"]), np.array(["no", "no"])).tolist() == [0.0, 1.0]
    assert churn.many(np.array(["yes", "no"], dtype=object),
                      np.array(["yes", "yes"], dtype=object)).tolist() == [1.0, 0.8]
    assert row_rewards(churn, ["yes"], ["yes"]).tolist() == [1.0]


@pytest.mark.parametrize("label", [
    0, 1, -2**63, 2**63 - 1, 0.5, -1e300, True, False, "", "x" * 256, ">50K", "ünïcödé",
])
def test_check_label_accepts_json_scalars(label):
    checked = check_label(label)
    assert checked == label and type(checked) is type(label)


@pytest.mark.parametrize(("label", "message"), [
    ([1], "not a JSON scalar"), ({"a": 1}, "not a JSON scalar"), (None, "not a JSON scalar"),
    (float("nan"), "not a JSON scalar"), (float("inf"), "not a JSON scalar"),
    (b"1", "not a JSON scalar"), (2**63, "64-bit"), (-2**63 - 1, "64-bit"),
    ("x" * 257, "at most 256"), ("a\x00b", "without NUL"),
])
def test_check_label_refuses_what_is_not_a_json_scalar(label, message):
    with pytest.raises(InvalidLabelError, match=message):
        check_label(label)


def test_check_label_against_declared_classes_is_type_aware():
    assert check_label(np.int64(1), [0, 1]) == 1 and type(check_label(np.int64(1))) is int
    assert check_label(">50K", ["<=50K", ">50K"]) == ">50K"
    for label, classes in [("1", [0, 1]), (True, [0, 1]), (1, [True, False]), (1, ["0", "1"]),
                           (1.0, [0, 1]), (">50K.", ["<=50K", ">50K"]), (2, [0, 1])]:
        with pytest.raises(InvalidLabelError, match="not one of the known classes"):
            check_label(label, classes)
    assert check_label(True, [True, 1, "1"]) is True


def test_accuracy_stays_equality():
    assert accuracy("yes", "yes") == 1.0 and accuracy(1, 0) == 0.0
