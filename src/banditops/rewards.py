"""Rewards: turn (label, prediction) into a number in [0, 1] that a policy can learn from.

A reward function is any callable ``(label, prediction) -> float``. Two are built in:
:func:`accuracy` (the study's reward for the census data) and :func:`cost_matrix`
(the study's kind of reward for fraud, where a missed fraud costs far more than a false
alarm). Whatever the function, :func:`validate_reward` is applied to its result, so a
reward outside [0, 1] or NaN is an error, never a silent 0.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from banditops.errors import InvalidLabelError, InvalidParameterError, InvalidRewardError

RewardFunction = Callable[[Any, Any], float]


def validate_reward(reward: object) -> float:
    """Return ``reward`` as a float, or raise :class:`InvalidRewardError` saying why not.

    >>> validate_reward(1)
    1.0
    >>> validate_reward(float("nan"))
    Traceback (most recent call last):
    ...
    banditops.errors.InvalidRewardError: reward must be a number in [0, 1], got nan
    """
    if type(reward) is float and 0.0 <= reward <= 1.0:  # the hot path: one check, NaN fails it
        return reward
    if not isinstance(reward, numbers.Real):  # int, float, bool, numpy scalars; not "1"
        raise InvalidRewardError(
            f"reward must be a number in [0, 1], got {reward!r} ({type(reward).__name__})"
        )
    value = float(reward)
    if not 0.0 <= value <= 1.0:
        raise InvalidRewardError(f"reward must be a number in [0, 1], got {value!r}")
    return value


def accuracy(label: Any, prediction: Any) -> float:
    """1.0 when the prediction equals the label, else 0.0.

    >>> accuracy(1, 1), accuracy(1, 0)
    (1.0, 0.0)
    """
    return 1.0 if label == prediction else 0.0


@dataclass(frozen=True, slots=True)
class CostMatrix:
    """Reward of each confusion-matrix cell for a binary task (positive class = 1/True).

    Built by :func:`cost_matrix`; callable as a reward function.
    """

    tp: float
    fp: float
    fn: float
    tn: float

    def __post_init__(self) -> None:
        for cell in ("tp", "fp", "fn", "tn"):
            value = getattr(self, cell)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidParameterError(f"cost_matrix {cell} must be a number, got {value!r}")
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise InvalidParameterError(
                    f"cost_matrix {cell} must be a reward in [0, 1], got {value!r}; "
                    "express costs as rewards, e.g. reward = 1 - cost / max_cost"
                )

    def __call__(self, label: Any, prediction: Any) -> float:
        if label:
            return self.tp if prediction else self.fn
        return self.fp if prediction else self.tn

    def many(self, labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """Rewards of whole arrays at once (replays score millions of rows)."""
        positive, flagged = np.asarray(labels).astype(bool), np.asarray(predictions).astype(bool)
        return np.where(positive, np.where(flagged, self.tp, self.fn),
                        np.where(flagged, self.fp, self.tn))

    def to_dict(self) -> dict[str, float]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}


def decision_threshold(reward: RewardFunction) -> float:
    """The probability of the positive class above which predicting it earns more reward.

    Predicting 1 pays ``p*tp + (1-p)*fp``, predicting 0 pays ``p*fn + (1-p)*tn``; they are
    equal at the threshold. Accuracy gives 0.5; a fraud matrix where a miss costs 20 false
    alarms gives 1/21.

    >>> round(decision_threshold(cost_matrix(tp=1, fp=0.95, fn=0, tn=1)), 4)
    0.0476
    """
    if isinstance(reward, CostMatrix):
        gain_negative, gain_positive = reward.tn - reward.fp, reward.tp - reward.fn
        if gain_negative + gain_positive > 0:
            return min(max(gain_negative / (gain_negative + gain_positive), 0.0), 1.0)
    return 0.5


def cost_matrix(*, tp: float, fp: float, fn: float, tn: float) -> CostMatrix:
    """A reward function for binary decisions, one reward in [0, 1] per confusion cell.

    Labels and predictions are read as booleans (1/True is the positive class).

    >>> fraud = cost_matrix(tp=1.0, fp=0.9, fn=0.0, tn=1.0)
    >>> fraud(1, 0)  # a missed fraud: the worst outcome
    0.0
    >>> fraud(0, 1)  # a false alarm: costs a little
    0.9
    """
    return CostMatrix(tp=float(tp), fp=float(fp), fn=float(fn), tn=float(tn))


def resolve_reward(reward: str | RewardFunction) -> RewardFunction:
    """Accept a reward function or the name of a built-in one (``"accuracy"``)."""
    if callable(reward):
        return reward
    if reward == "accuracy":
        return accuracy
    raise InvalidParameterError(
        f"reward must be a callable (label, prediction) -> float or 'accuracy', got {reward!r}"
    )


def row_rewards(reward: RewardFunction, labels: Any, predictions: Any) -> np.ndarray:
    """The reward of every (label, prediction) pair, vectorised for the built-in rewards.

    >>> row_rewards(accuracy, [1, 0, 1], [1, 1, 1]).tolist()
    [1.0, 0.0, 1.0]
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise InvalidParameterError(
            f"labels and predictions differ in shape: {labels.shape} vs {predictions.shape}")
    if reward is accuracy:
        return (labels == predictions).astype(float)
    many = getattr(reward, "many", None)
    if callable(many):
        return np.asarray(many(labels, predictions), dtype=float)
    return np.fromiter((validate_reward(reward(y, p)) for y, p in zip(labels, predictions,
                                                                        strict=True)),
                       dtype=float, count=len(labels))


def check_label(label: Any, classes: Any = None) -> Any:  # provisional: H2 replaces it
    if type(label) not in (str, int, float, bool) or (
            isinstance(label, float) and not math.isfinite(label)):
        raise InvalidLabelError(f"label must be a JSON scalar, got {label!r}")
    if classes is not None and not any(
            type(label) is type(c) and label == c for c in classes):
        raise InvalidLabelError(f"label {label!r} is not one of {list(classes)}")
    return label
