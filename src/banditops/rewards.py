"""Rewards: turn (label, prediction) into a number in [0, 1] that a policy can learn from.

A reward function is any callable ``(label, prediction) -> float``. Two are built in:
:func:`accuracy` (the study's reward for the census data) and :func:`cost_matrix`
(the study's kind of reward for fraud, where a missed fraud costs far more than a false
alarm). Whatever the function, :func:`validate_reward` is applied to its result, so a
reward outside [0, 1] or NaN is an error, never a silent 0.

Labels are checked, never read by truthiness: :func:`check_label` accepts a JSON scalar
(and, given the deployment's classes, only one of them), and a cost matrix knows its two
classes and refuses anything else. Classes are compared type-aware: JSON ``true``, ``1`` and
``"1"`` are three different labels (numpy integers count as ints; a bool is not an int here).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from banditops.errors import InvalidLabelError, InvalidParameterError, InvalidRewardError

RewardFunction = Callable[[Any, Any], float]
Label = str | int | float | bool
MAX_LABEL_CHARS = 256
_INT_LIMIT = 2**63


def _class_key(value: object) -> tuple[type, Any] | None:
    """``(kind, value)`` under which labels compare type-aware; None for a non-label.

    bool (Python or numpy) -> bool, integers (Python or numpy) -> int, str -> str,
    finite floats -> float. ``1``, ``True``, ``1.0`` and ``"1"`` get four different keys.
    """
    kind = type(value)
    if kind is int or kind is str or kind is bool:  # the common case, checked in ~50 ns
        return kind, value
    if isinstance(value, bool | np.bool_):
        return bool, bool(value)
    if isinstance(value, int | np.integer):
        return int, int(value)
    if isinstance(value, str):
        return str, str(value)
    if isinstance(value, float | np.floating) and math.isfinite(value):
        return float, float(value)
    return None


def label_kind(value: object) -> type | None:
    """The kind a label or prediction compares as (bool, int, float or str); None if it is
    not a JSON scalar. ``1``, ``True``, ``1.0`` and ``"1"`` are four kinds of label."""
    key = _class_key(value)
    return None if key is None else key[0]


def _describe(value: object) -> str:
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{text} ({type(value).__name__})"


class LabelSet(tuple):
    """Declared classes with their type-aware keys computed once (a deployment checks every
    label against them)."""

    keys: frozenset[tuple[type, Any]]

    def __new__(cls, labels: Sequence[Label]) -> LabelSet:
        self = super().__new__(cls, tuple(labels))
        keys = [_class_key(c) for c in self]
        if any(k is None for k in keys):
            raise InvalidParameterError(f"labels must be JSON scalars, got {list(self)!r}")
        self.keys = frozenset(keys)  # type: ignore[arg-type]
        return self


def check_label(label: object, classes: Sequence[Label] | None = None) -> Label:
    """Return ``label`` as a plain Python scalar, or raise :class:`InvalidLabelError`.

    A label is a JSON scalar: a str of at most 256 characters without NUL, an int within
    +-2**63, a finite float, or a bool. With ``classes`` (the deployment's declared labels)
    it must also be one of them, compared type-aware.

    >>> check_label(">50K", ["<=50K", ">50K"])
    '>50K'
    >>> check_label("1", [0, 1])
    Traceback (most recent call last):
    ...
    banditops.errors.InvalidLabelError: label '1' (str) is not one of the known classes [0, 1]
    >>> check_label([1])
    Traceback (most recent call last):
    ...
    banditops.errors.InvalidLabelError: label [1] (list) is not a JSON scalar (str, int, finite float or bool)
    """  # noqa: E501
    key = _class_key(label)
    if key is None:
        raise InvalidLabelError(f"label {_describe(label)} is not a JSON scalar "
                                "(str, int, finite float or bool)")
    kind, value = key
    if kind is str and (len(value) > MAX_LABEL_CHARS or "\x00" in value):
        raise InvalidLabelError(f"label {_describe(label)} must be a string of at most "
                                f"{MAX_LABEL_CHARS} characters without NUL")
    if kind is int and not -_INT_LIMIT <= value < _INT_LIMIT:
        raise InvalidLabelError(f"label {_describe(label)} is outside the 64-bit integer range")
    if classes is not None and key not in (
            classes.keys if isinstance(classes, LabelSet) else {_class_key(c) for c in classes}):
        raise InvalidLabelError(
            f"label {_describe(label)} is not one of the known classes {list(classes)!r}")
    return value  # type: ignore[no-any-return]


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
    """Reward of each confusion-matrix cell for a binary task with two named classes.

    Built by :func:`cost_matrix`; callable as a reward function. A label or prediction that
    is neither ``positive`` nor ``negative`` (compared type-aware) raises
    :class:`InvalidLabelError`.
    """

    tp: float
    fp: float
    fn: float
    tn: float
    positive: Label = 1
    negative: Label = 0
    _classes: dict[Any, bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            positive, negative = check_label(self.positive), check_label(self.negative)
        except InvalidLabelError as error:
            raise InvalidLabelError(f"cost_matrix classes: {error}") from None
        if _class_key(positive) == _class_key(negative):
            raise InvalidParameterError(
                f"cost_matrix positive and negative must differ, both are {positive!r}")
        object.__setattr__(self, "positive", positive)
        object.__setattr__(self, "negative", negative)
        # (type, value) -> is it the positive class; a dict lookup keeps the hot path fast.
        object.__setattr__(self, "_classes",
                           {_class_key(positive): True, _class_key(negative): False})
        for cell in ("tp", "fp", "fn", "tn"):
            value = getattr(self, cell)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidParameterError(f"cost_matrix {cell} must be a number, got {value!r}")
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise InvalidParameterError(
                    f"cost_matrix {cell} must be a reward in [0, 1], got {value!r}; "
                    "express costs as rewards, e.g. reward = 1 - cost / max_cost"
                )

    @property
    def classes(self) -> tuple[Label, Label]:
        """``(negative, positive)``: the only labels and predictions this matrix knows."""
        return self.negative, self.positive

    def _is_positive(self, value: Any, what: str) -> bool:
        try:  # exact Python types (int, str, bool) are found at once
            return self._classes[(type(value), value)]
        except (KeyError, TypeError):  # numpy scalars, subclasses, unhashable or unknown
            key = _class_key(value)
            if key is not None and key in self._classes:
                return self._classes[key]
        raise InvalidLabelError(f"{what} {_describe(value)} is not one of the known classes "
                                f"{list(self.classes)!r}")

    def __call__(self, label: Any, prediction: Any) -> float:
        if self._is_positive(label, "label"):
            return self.tp if self._is_positive(prediction, "prediction") else self.fn
        return self.fp if self._is_positive(prediction, "prediction") else self.tn

    def _positive_mask(self, values: np.ndarray, what: str) -> np.ndarray:
        """Boolean array: which entries are the positive class; refuses any unknown entry."""
        same_kind = {bool: "b", int: "iu", str: "U", float: "f"}[type(self.positive)]
        if values.dtype.kind in same_kind:
            positive = values == self.positive
            if not (positive | (values == self.negative)).all():
                bad = values[~positive & (values != self.negative)].flat[0]
                raise InvalidLabelError(f"{what} {_describe(bad.item())} is not one of the known "
                                        f"classes {list(self.classes)!r}")
            return positive
        # Other dtypes (object arrays, ints against str classes, ...): element by element.
        flat = [self._is_positive(value, what) for value in values.ravel().tolist()]
        return np.array(flat, dtype=bool).reshape(values.shape)

    def many(self, labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """Rewards of whole arrays at once (replays score millions of rows)."""
        positive = self._positive_mask(np.asarray(labels), "label")
        flagged = self._positive_mask(np.asarray(predictions), "prediction")
        return np.where(positive, np.where(flagged, self.tp, self.fn),
                        np.where(flagged, self.fp, self.tn))

    def to_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
                "positive": self.positive, "negative": self.negative}


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


def cost_matrix(*, tp: float, fp: float, fn: float, tn: float, positive: Label = 1,
                negative: Label = 0) -> CostMatrix:
    """A reward function for binary decisions, one reward in [0, 1] per confusion cell.

    Labels and predictions must each be exactly ``positive`` or ``negative`` (compared
    type-aware: ``True``, ``1`` and ``"1"`` are different labels); anything else raises
    :class:`InvalidLabelError`, never counts as either class by truthiness.

    >>> fraud = cost_matrix(tp=1.0, fp=0.9, fn=0.0, tn=1.0)
    >>> fraud(1, 0)  # a missed fraud: the worst outcome
    0.0
    >>> fraud(0, 1)  # a false alarm: costs a little
    0.9
    >>> fraud("no", 0)
    Traceback (most recent call last):
    ...
    banditops.errors.InvalidLabelError: label 'no' (str) is not one of the known classes [0, 1]
    >>> churn = cost_matrix(tp=1, fp=0.8, fn=0, tn=1, positive="yes", negative="no")
    >>> churn("yes", "no"), churn.classes
    (0.0, ('no', 'yes'))
    """
    return CostMatrix(tp=_cell("tp", tp), fp=_cell("fp", fp), fn=_cell("fn", fn),
                      tn=_cell("tn", tn), positive=positive, negative=negative)


def _cell(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidParameterError(f"cost_matrix {name} must be a number, got {value!r}")
    return float(value)


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
