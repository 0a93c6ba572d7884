"""Vectorised rewards agree with the per-request ones, and the decision threshold pays."""

from __future__ import annotations

import numpy as np
import pytest

from banditops.errors import InvalidParameterError, InvalidRewardError
from banditops.rewards import accuracy, cost_matrix, decision_threshold, row_rewards

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
