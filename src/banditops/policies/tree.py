"""Learned partition: a shallow tree splits the requests where versions' rewards differ, and a
rule per leaf picks the version.

Versions are rarely better everywhere: concept drift hits one segment, model families are
strong in different regions. A :class:`TreeLeader` or :class:`TreeThompson` keeps the last
``window`` labelled requests (their encoded features and every reward known for them) and,
every ``refit_every`` labelled requests, fits a scikit-learn ``DecisionTreeRegressor`` with one
output per live version. The tree is fitted on *reward differences* (each row's rewards minus
their mean over the versions), so it splits where the versions disagree about who is right,
not where the label is merely easier. Routing a request walks the tree's arrays (a few
comparisons in Python; scikit-learn is never called per request), and the leaf's rule chooses.

Splitting on noise is guarded three ways: ``min_samples_leaf``; ``min_impurity_decrease``
(on the reward differences); and *reduced-error pruning* (Quinlan, 1987, "Simplifying decision
trees") on held-out rows: the tree is fitted on the older ``1 - holdout`` of the window and
each split is kept only if, on the newest ``holdout`` share, routing by it earns more than its
parent node's single choice, by ``split_z`` standard errors of the paired per-row differences.
A tree pruned to its root is one leaf, and the policy is then context-free. Pruning only
compares choices, so the guard is the decision that matters, not a fit statistic.

Features: whatever the :class:`~banditops.context.ContextEncoder` (parameters ``dimension``,
``features``) makes of the request: numbers as ``sign(x) log1p|x|`` (order kept, so a split
on it is a split on the number), each category one-hot in a hashed slot (a split on a slot
separates that category, with whatever collides there; ``dimension`` 256 makes collisions
rare for tables of a few hundred categories), nulls as their own category. Stored contexts
are float32, as scikit-learn's trees compare them, so routing matches the fitted splits
exactly.

Rows come from ``update`` / ``observe``: the rewards of one labelled request arrive one
version at a time with the same context (a :class:`~banditops.Deployment` passes the decision's
context to the served version's ``update`` and to each shadow ``observe``), so consecutive
rewards for the same context and distinct versions are one row. ``update(name, reward)``
without a context only feeds the context-free statistics.

Versions come and go: the tree is fitted for the live versions the window covers (oldest
first, as long as enough rows hold all of their rewards); a version released since has no
output in it, competes through the leaf rule's statistics as soon as it has rewards in a leaf,
and is in the next fit that has rows for it.

State is plain data: the tree as arrays (``left``, ``right``, ``feature``, ``threshold``), the
window as base64 (contexts as sparse float32: an encoded request has one entry per feature,
rewards as float64), and the running sums the rules use, so a restored policy continues
exactly. With the defaults (a window of 4,000) and four versions the JSON is about 0.7 MB on
Adult (14 features) and 1.2 MB on the fraud data (31); it grows with ``window`` and the
number of features, never with traffic.
"""

from __future__ import annotations

import base64
import math
import zlib
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from banditops.context import ContextEncoder, check_features
from banditops.errors import InvalidParameterError
from banditops.policies.base import (
    ContextualPolicy,
    check_number,
    check_window,
    set_checked,
)
from banditops.policies.leader import FollowTheLeader
from banditops.policies.maxprob import beta_max_probability, chosen_probability
from banditops.rewards import validate_reward

MAX_DEPTH = 6
MAX_WINDOW = 100_000
MEMORY = 4096  # decisions whose propensity TreeThompson remembers until their feedback


def _check_tree_params(p: Any) -> None:
    """The parameters both tree policies share."""
    ContextEncoder(p.dimension)  # checks the dimension
    set_checked(p, "features", check_features(p.features))
    for name in ("window", "refit_every", "min_samples_leaf", "leaf_window"):
        check_window(name, getattr(p, name))
    if p.window > MAX_WINDOW:
        raise InvalidParameterError(f"window must be at most {MAX_WINDOW:,}, got {p.window}")
    if isinstance(p.max_depth, bool) or not isinstance(p.max_depth, int) \
            or not 1 <= p.max_depth <= MAX_DEPTH:
        raise InvalidParameterError(
            f"max_depth must be an integer in [1, {MAX_DEPTH}], got {p.max_depth!r}")
    set_checked(p, "min_impurity_decrease", check_number(
        "min_impurity_decrease", p.min_impurity_decrease, low=0.0, high=1.0))
    set_checked(p, "holdout", check_number("holdout", p.holdout, low=0.0, high=0.9,
                                           low_open=True))
    set_checked(p, "split_z", check_number("split_z", p.split_z, low=0.0, high=10.0))
    if min_fit_rows(p) > p.window:
        raise InvalidParameterError(
            f"window ({p.window}) must hold at least {min_fit_rows(p)} rows: two leaves of "
            f"min_samples_leaf ({p.min_samples_leaf}) in the fitted share (1 - holdout) and "
            "one held-out row")


def min_fit_rows(p: Any) -> int:
    """Rows a fit needs: two leaves' worth in the fitted share, and some held out."""
    return math.ceil(2 * p.min_samples_leaf / (1.0 - p.holdout)) + 1


@dataclass(frozen=True, slots=True)
class _TreeParams:
    """The tree's parameters, shared by both learned-partition policies (defaults here only)."""

    dimension: int = 256
    features: tuple[str, ...] = ()
    window: int = 4000
    refit_every: int = 250
    max_depth: int = 2
    min_samples_leaf: int = 300
    min_impurity_decrease: float = 0.0
    holdout: float = 0.25
    split_z: float = 0.0
    leaf_window: int = 500


@dataclass(frozen=True, slots=True)
class TreeLeaderParams(_TreeParams):
    """Parameters of :class:`TreeLeader` (documented there), validated on creation.

    >>> TreeLeaderParams(window=500, min_samples_leaf=300)
    Traceback (most recent call last):
    ...
    banditops.errors.InvalidParameterError: window (500) must hold at least 801 rows: two leaves of min_samples_leaf (300) in the fitted share (1 - holdout) and one held-out row
    """  # noqa: E501

    switch_z: float = 1.5
    leader_window: int = 1000
    min_rewards: int = 30
    cold_start_retry: int = 100

    def __post_init__(self) -> None:
        _check_tree_params(self)
        set_checked(self, "switch_z", check_number("switch_z", self.switch_z,
                                                   low=0.0, high=10.0))
        for name in ("leader_window", "min_rewards", "cold_start_retry"):
            check_window(name, getattr(self, name))
        if self.min_rewards > min(self.leader_window, self.leaf_window):
            raise InvalidParameterError(
                f"min_rewards must be at most leader_window and leaf_window "
                f"({min(self.leader_window, self.leaf_window)}), got {self.min_rewards}")


@dataclass(frozen=True, slots=True)
class TreeThompsonParams(_TreeParams):
    """Parameters of :class:`TreeThompson` (documented there), validated on creation."""

    prior_weight: float = 20.0
    propensity_floor: float = 0.05

    def __post_init__(self) -> None:
        _check_tree_params(self)
        set_checked(self, "prior_weight", check_number("prior_weight", self.prior_weight,
                                                       low=0.0, high=1e6))
        set_checked(self, "propensity_floor", check_number(
            "propensity_floor", self.propensity_floor, low=0.0, high=1.0, low_open=True))


# ----------------------------------------------------------------- the tree as arrays
@dataclass
class TreeArrays:
    """A fitted, pruned tree: node 0 is the root; ``left[j] == -1`` marks a leaf. A row goes
    left at node j when ``float32(x[feature[j]]) <= threshold[j]`` (scikit-learn's rule)."""

    left: list[int]
    right: list[int]
    feature: list[int]
    threshold: list[float]

    @classmethod
    def root(cls) -> TreeArrays:
        return cls([-1], [-1], [-1], [0.0])

    @property
    def leaves(self) -> list[int]:
        return [j for j, child in enumerate(self.left) if child == -1]

    def leaf(self, x: np.ndarray) -> int:
        """The leaf of one encoded request (a few comparisons, no allocation)."""
        left, node = self.left, 0
        while left[node] != -1:
            if float(np.float32(x[self.feature[node]])) <= self.threshold[node]:
                node = left[node]
            else:
                node = self.right[node]
        return node

    def leaf_all(self, X: np.ndarray) -> np.ndarray:
        """The leaf of every row of ``X`` (float32), shape (rows,)."""
        left = np.asarray(self.left)
        right = np.asarray(self.right)
        feature = np.asarray(self.feature)
        threshold = np.asarray(self.threshold)
        node = np.zeros(len(X), dtype=np.int64)
        rows = np.arange(len(X))
        while True:
            inner = left[node] != -1
            if not inner.any():
                return node
            at = node[inner]
            go_left = X[rows[inner], feature[at]] <= threshold[at]
            node[inner] = np.where(go_left, left[at], right[at])

    @classmethod
    def from_fitted(cls, fitted: Any, keep: np.ndarray, used: np.ndarray) -> TreeArrays:
        """A scikit-learn ``tree_`` cut below the nodes whose ``keep`` is false, renumbered
        depth first (scikit-learn's own order, so an uncut tree keeps its node ids), its
        features mapped through ``used`` (the columns it was fitted on)."""
        tree = cls([], [], [], [])

        def copy(node: int) -> int:
            index = len(tree.left)
            tree.left.append(-1)
            tree.right.append(-1)
            tree.feature.append(-1)
            tree.threshold.append(0.0)
            if keep[node]:
                tree.feature[index] = int(used[fitted.feature[node]])
                tree.threshold[index] = float(fitted.threshold[node])
                tree.left[index] = copy(int(fitted.children_left[node]))
                tree.right[index] = copy(int(fitted.children_right[node]))
            return index

        copy(0)
        return tree

    def state(self) -> dict[str, Any]:
        return {"left": list(self.left), "right": list(self.right),
                "feature": list(self.feature), "threshold": list(self.threshold)}

    @classmethod
    def from_state(cls, state: dict[str, Any], dimension: int) -> TreeArrays:
        tree = cls([int(v) for v in state["left"]], [int(v) for v in state["right"]],
                   [int(v) for v in state["feature"]], [float(v) for v in state["threshold"]])
        nodes = len(tree.left)
        if not nodes or any(len(a) != nodes for a in (tree.right, tree.feature,
                                                       tree.threshold)):
            raise ValueError("tree arrays of different lengths")
        for j in range(nodes):
            if tree.left[j] == -1:
                continue
            if not (j < tree.left[j] < nodes and j < tree.right[j] < nodes
                    and 0 <= tree.feature[j] < dimension):
                raise ValueError(f"tree node {j} points outside the tree")
        return tree


def fit_tree(X: np.ndarray, targets: np.ndarray, values: np.ndarray, p: Any) -> TreeArrays:
    """Fit on the older rows, prune on the newest ``holdout`` share (module docstring).

    ``X`` (rows, dimension) float32, chronological; ``targets`` (rows, k): what the tree fits
    (reward differences); ``values`` (rows, k): what choosing each output earns on a row
    (the rewards, or their importance-weighted estimates), for pruning."""
    from sklearn.tree import DecisionTreeRegressor

    held = max(1, int(len(X) * p.holdout))
    fit_rows = len(X) - held
    used = np.flatnonzero((X[:fit_rows] != X[0]).any(axis=0))  # columns that vary
    if len(used) == 0 or fit_rows < 2 * p.min_samples_leaf:
        return TreeArrays.root()
    model = DecisionTreeRegressor(max_depth=p.max_depth, min_samples_leaf=p.min_samples_leaf,
                                  min_impurity_decrease=p.min_impurity_decrease,
                                  random_state=0)
    model.fit(X[:fit_rows, used], targets[:fit_rows])
    fitted = model.tree_
    keep = _prune(fitted, model.apply(X[fit_rows:, used]), values[fit_rows:], p.split_z)
    return TreeArrays.from_fitted(fitted, keep, used)


def _prune(fitted: Any, held_leaves: np.ndarray, values: np.ndarray, z: float) -> np.ndarray:
    """Reduced-error pruning: which nodes keep their split. Bottom-up, a split is kept when
    routing the held-out rows by it (pruned below) earns more than the node's own choice (its
    best output on the fitted rows) by more than ``z`` standard errors of the paired
    per-row differences."""
    left, right = fitted.children_left, fitted.children_right
    nodes = fitted.node_count
    best = fitted.value[:, :, 0].argmax(axis=1)
    # The held-out rows under each node: a node's rows are its leaves' rows.
    parent = np.full(nodes, -1)
    for j in range(nodes):
        if left[j] != -1:
            parent[left[j]] = parent[right[j]] = j
    under: list[list[int]] = [[] for _ in range(nodes)]
    for row, leaf in enumerate(held_leaves):
        node = int(leaf)
        while node != -1:
            under[node].append(row)
            node = int(parent[node])
    earned = np.zeros((nodes, len(values)))  # per row: what the (pruned) subtree earns
    keep = np.zeros(nodes, dtype=bool)
    for j in range(nodes - 1, -1, -1):  # children have larger ids than their parent
        rows = np.asarray(under[j], dtype=np.int64)
        own = values[rows, best[j]]
        earned[j, rows] = own
        if left[j] == -1 or len(rows) == 0:
            continue
        split = earned[left[j], rows] + earned[right[j], rows]
        gain = split - own
        total = float(gain.sum())
        if total > 0.0 and total > z * math.sqrt(float((gain * gain).sum())):
            keep[j] = True
            earned[j, rows] = split
    return keep


# ------------------------------------------------------------------- the window of rows
def _encode_b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _decode_b64(text: str, dtype: Any, count: int) -> np.ndarray:
    array = np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype=dtype)
    if len(array) != count:
        raise ValueError(f"expected {count} values, got {len(array)}")
    return array.copy()


class _Window:
    """The last ``size`` labelled requests: contexts (float32), a reward column per arm (NaN
    where unknown), the leaf of each row, who served it (its reward came by ``update``) and
    with what propensity (kept by TreeThompson). A ring buffer; ``order()`` gives the slots
    oldest first."""

    def __init__(self, size: int, dimension: int) -> None:
        self.size = size
        self.X = np.zeros((size, dimension), dtype=np.float32)
        self.R = np.full((size, 8), np.nan)
        self.leaf = np.zeros(size, dtype=np.int64)
        self.served = np.full(size, -1, dtype=np.int64)  # column of the served arm
        self.propensity = np.full(size, np.nan)
        self.head = 0  # next slot to write
        self.count = 0

    def order(self) -> np.ndarray:
        return (np.arange(self.head - self.count, self.head) % self.size).astype(np.int64)

    def grow(self, columns: int) -> None:
        if columns > self.R.shape[1]:
            wider = np.full((self.size, max(columns, 2 * self.R.shape[1])), np.nan)
            wider[:, :self.R.shape[1]] = self.R
            self.R = wider

    def oldest(self) -> int:
        return (self.head - self.count) % self.size

    def push(self, x32: np.ndarray, leaf: int) -> int:
        slot = self.head
        self.X[slot] = x32
        self.R[slot] = np.nan
        self.leaf[slot] = leaf
        self.served[slot] = -1
        self.propensity[slot] = np.nan
        self.head = (slot + 1) % self.size
        self.count = min(self.count + 1, self.size)
        return slot

    def state(self, columns: dict[str, int], bandit: bool) -> dict[str, Any]:
        slots = self.order()
        position = {col: i for i, col in enumerate(columns.values())}
        X = self.X[slots]
        rows, cols = np.nonzero(X)  # row-major: each row's entries together, in slot order
        state = {
            "rows": int(self.count),
            # per row, how many of its slots are non-zero; then those slots and values
            "nonzero_counts": _encode_b64(np.bincount(rows, minlength=self.count)
                                          .astype(np.uint16)),
            "nonzero_slots": _encode_b64(cols.astype(np.uint16)),
            "nonzero_values": _encode_b64(X[rows, cols].astype(np.float32)),
            "rewards": {name: _encode_b64(self.R[slots, col]) for name, col in columns.items()},
            "leaf": _encode_b64(self.leaf[slots].astype(np.int32)),
            # who served each row, as the arm's position in ``columns`` (-1: no served reward)
            "served": _encode_b64(np.array([position.get(int(c), -1)
                                            for c in self.served[slots]], dtype=np.int32)),
        }
        if bandit:
            state["propensity"] = _encode_b64(self.propensity[slots])
        return state

    def load(self, state: dict[str, Any], columns: dict[str, int], bandit: bool) -> None:
        count = int(state["rows"])
        if not 0 <= count <= self.size:
            raise ValueError(f"window of {count} rows, more than its size {self.size}")
        self.head, self.count = count % self.size, count
        slots = self.order()
        counts = _decode_b64(state["nonzero_counts"], np.uint16, count).astype(np.int64)
        nonzero = int(counts.sum())
        rows = np.repeat(np.arange(count), counts)
        cols = _decode_b64(state["nonzero_slots"], np.uint16, nonzero).astype(np.int64)
        values = _decode_b64(state["nonzero_values"], np.float32, nonzero)
        if nonzero and cols.max() >= self.X.shape[1]:
            raise ValueError("window contexts point outside the encoder's slots")
        self.X[:] = 0.0
        self.X[slots[rows], cols] = values
        self.grow(max(columns.values(), default=0) + 1)
        for name, col in columns.items():
            column = _decode_b64(state["rewards"][name], np.float64, count)
            known = column[~np.isnan(column)]
            if ((known < 0.0) | (known > 1.0)).any():
                raise ValueError(f"rewards of {name!r} outside [0, 1]")
            self.R[slots, col] = column
        self.leaf[slots] = _decode_b64(state["leaf"], np.int32, count)
        served = _decode_b64(state["served"], np.int32, count)
        if ((served < -1) | (served >= len(columns))).any():
            raise ValueError("a row served by an arm the policy does not have")
        self.served[slots] = np.array([-1, *columns.values()], dtype=np.int64)[served + 1]
        if bandit:
            self.propensity[slots] = _decode_b64(state["propensity"], np.float64, count)


# ---------------------------------------------------------------- the shared machinery
class _TreePolicy(ContextualPolicy):
    """Window, rows, refits and tree routing; subclasses keep their leaf statistics."""

    _bandit: ClassVar[bool] = False  # keeps who served each row, for importance weights

    def __init__(self, params: Any, *, seed: int | None) -> None:
        super().__init__(seed=seed)
        self.p = params
        self.encoder = ContextEncoder(params.dimension, params.features)
        self._window = _Window(params.window, params.dimension)
        self._cols: dict[str, int] = {}
        self._free: list[int] = []
        self._tree = TreeArrays.root()
        self._since_refit = 0
        self._pending = -1  # slot of the row being assembled (-1: none)
        self._pending_context: Any = None  # the object it came with (identity check)
        self.refits = 0

    # ------------------------------------------------------------------ arms
    def _column(self, name: str) -> int:
        if self._free:
            col = self._free.pop()
        else:
            col = len(self._cols)
            self._window.grow(col + 1)
        self._cols[name] = col
        return col

    def _on_add(self, name: str) -> None:
        col = self._column(name)
        self._window.R[:, col] = np.nan
        self._stats_add_arm(col)

    def _on_remove(self, name: str) -> None:
        col = self._cols.pop(name)
        self._stats_drop_arm(col)
        window = self._window
        window.R[:, col] = np.nan
        window.served[window.served == col] = -1
        self._free.append(col)
        self._free.sort(reverse=True)  # reuse the lowest column first: deterministic

    # --------------------------------------------------------------- contexts
    def _vector(self, context: Any) -> np.ndarray:
        if isinstance(context, np.ndarray):
            return self.encoder.check_vector(context)
        if isinstance(context, Mapping):
            return self.encoder.encode(context)
        raise InvalidParameterError(
            "a context must be a mapping of feature names to values or an encoded vector of "
            f"{self.p.dimension} numbers, got {type(context).__name__}")

    def _leaf(self, context: Any) -> int:
        """The leaf a request with this context falls in (0 when the tree is one leaf)."""
        if self._tree.left[0] == -1:
            if context is not None:
                self._vector(context)  # a bad context is an error whatever the tree
            return 0
        return self._tree.leaf(self._vector(context))

    # ------------------------------------------------------------------ rows
    def _learn(self, name: str, reward: float, context: Any, *, served: bool) -> int:
        """A reward for arm ``name`` on a request with ``context``: into its row, which is
        the row being assembled when it has the same context, no reward of ``name`` yet and,
        for a served reward (``update``), no served reward yet; else a new row. Returns the
        row's slot (-1: no context, nothing stored)."""
        col = self._cols.get(name)
        if col is None:
            self._require_arm(name)
            return -1
        if context is None:
            return -1
        window = self._window
        slot = self._pending
        if not (slot >= 0 and np.isnan(window.R[slot, col])
                and not (served and window.served[slot] >= 0)
                and (context is self._pending_context
                     or np.array_equal(window.X[slot],
                                       self._vector(context).astype(np.float32)))):
            slot = self._new_row(context)
        window.R[slot, col] = reward
        if served:
            window.served[slot] = col
        self._stats_reward(slot, col, reward)
        return slot

    def _new_row(self, context: Any) -> int:
        x32 = self._vector(context).astype(np.float32)
        if self._pending >= 0:
            self._stats_close(self._pending)
            self._pending = -1
        if self._since_refit >= self.p.refit_every:
            self._refit()
        window = self._window
        if window.count == window.size:
            self._stats_evict(window.oldest())
        leaf = self._tree.leaf(x32) if self._tree.left[0] != -1 else 0
        slot = window.push(x32, leaf)
        self._since_refit += 1
        self._pending, self._pending_context = slot, context
        return slot

    def _refit(self) -> None:
        """Fit a new tree on the window and rebuild the leaf statistics from it."""
        self._since_refit = 0
        self.refits += 1
        window = self._window
        slots = window.order()
        fitted = self._fit_data(slots)
        if fitted is None:
            tree = TreeArrays.root()
        else:
            rows, targets, values = fitted
            tree = fit_tree(window.X[rows], targets, values, self.p)
        self._tree = tree
        window.leaf[slots] = (tree.leaf_all(window.X[slots]) if tree.left[0] != -1
                              else 0)
        self._rebuild_stats(slots)

    def _full_rows(self, slots: np.ndarray) -> tuple[np.ndarray, list[int]] | None:
        """Rows where every one of the oldest live arms has a reward (oldest first, each
        added while enough rows hold them all), and those arms' columns."""
        need = min_fit_rows(self.p)
        R = self._window.R
        chosen: list[int] = []
        covered = np.ones(len(slots), dtype=bool)
        for name in self._arms:
            col = self._cols[name]
            both = covered & ~np.isnan(R[slots, col])
            if both.sum() >= need:
                chosen.append(col)
                covered = both
        if len(chosen) < 2:
            return None
        return slots[covered], chosen

    def _fit_data(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(rows, targets, values) to fit and prune a tree on, or None: not enough rows."""
        full = self._full_rows(slots)
        if full is None:
            return None
        rows, cols = full
        values = self._window.R[np.ix_(rows, cols)]
        return rows, values - values.mean(axis=1, keepdims=True), values

    # ------------------------------------------------------------- statistics hooks
    def _stats_add_arm(self, col: int) -> None:
        raise NotImplementedError

    def _stats_drop_arm(self, col: int) -> None:
        raise NotImplementedError

    def _stats_close(self, slot: int) -> None:
        """The row at ``slot`` is complete: the next request's rewards have begun."""

    def _stats_reward(self, slot: int, col: int, reward: float) -> None:
        """Arm ``col``'s reward joined the row at ``slot``."""

    def _stats_evict(self, slot: int) -> None:
        raise NotImplementedError

    def _rebuild_stats(self, slots: np.ndarray) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------- state
    @property
    def tree(self) -> TreeArrays:
        """The current tree (one leaf until a split passed validation)."""
        return self._tree

    def _base_state(self) -> dict[str, Any]:
        window = self._window
        pending = -1
        if self._pending >= 0 and window.count:
            pending = int(np.flatnonzero(window.order() == self._pending)[0])
        return {"window": window.state(self._cols, self._bandit),
                "tree": self._tree.state(), "since_refit": self._since_refit,
                "refits": self.refits, "pending": pending}

    def _load_base(self, stats: dict[str, Any]) -> None:
        # Columns in arm order (from_state added the arms in order).
        window = self._window
        window.load(stats["window"], self._cols, self._bandit)
        self._tree = TreeArrays.from_state(stats["tree"], self.p.dimension)
        leaves = set(self._tree.leaves)
        if window.count and not set(window.leaf[window.order()].tolist()) <= leaves:
            raise ValueError("window rows in leaves the tree does not have")
        self._since_refit = int(stats["since_refit"])
        self.refits = int(stats["refits"])
        pending = int(stats["pending"])
        self._pending = int(window.order()[pending]) if 0 <= pending < window.count else -1
        self._pending_context = None


# ------------------------------------------------------------------- TreeLeader
class _PairStats:
    """One leaf's last rows (complete requests), and per pair of arm columns (a, b) over the
    rows where both have a reward: their count ``n``, the sum ``d`` of r_a - r_b and ``d2``
    of its square. Plain lists: a handful of versions, updated once per request."""

    __slots__ = ("d", "d2", "n", "rows")

    def __init__(self, columns: int) -> None:
        self.rows: deque[int] = deque()
        self.n = [[0.0] * columns for _ in range(columns)]
        self.d = [[0.0] * columns for _ in range(columns)]
        self.d2 = [[0.0] * columns for _ in range(columns)]

    def grow(self, columns: int) -> None:
        for matrix in (self.n, self.d, self.d2):
            for line in matrix:
                line.extend([0.0] * (columns - len(line)))
            matrix.extend([0.0] * columns for _ in range(columns - len(matrix)))

    def _count(self, row: list[float], sign: float) -> None:
        known = [(col, r) for col, r in enumerate(row) if r == r]  # NaN: unknown
        n, d, d2 = self.n, self.d, self.d2
        for i, (a, ra) in enumerate(known):
            for b, rb in known[i + 1:]:
                diff = ra - rb
                n[a][b] += sign
                n[b][a] += sign
                d[a][b] += sign * diff
                d[b][a] -= sign * diff
                d2[a][b] += sign * diff * diff
                d2[b][a] += sign * diff * diff

    def add(self, row: list[float]) -> None:
        self._count(row, 1.0)

    def remove(self, row: list[float]) -> None:
        self._count(row, -1.0)

    def rebuild(self, R: np.ndarray) -> None:
        """From scratch, over the rows ``R`` (rows, columns; NaN unknown)."""
        known = (~np.isnan(R)).astype(float)
        values = np.nan_to_num(R)
        n = known.T @ known
        d = values.T @ known - known.T @ values
        squares = values * values
        d2 = squares.T @ known + known.T @ squares - 2.0 * (values.T @ values)
        for matrix in (n, d2):
            np.fill_diagonal(matrix, 0.0)
        self.n, self.d, self.d2 = n.tolist(), d.tolist(), d2.tolist()

    def drop(self, col: int) -> None:
        for matrix in (self.n, self.d, self.d2):
            for line in matrix:
                line[col] = 0.0
            matrix[col] = [0.0] * len(matrix[col])

    def state(self, cols: list[int]) -> dict[str, list[list[float]]]:
        return {name: [[matrix[a][b] for b in cols] for a in cols]
                for name, matrix in (("n", self.n), ("d", self.d), ("d2", self.d2))}

    def load(self, state: dict[str, Any], cols: list[int]) -> None:
        for name in ("n", "d", "d2"):
            matrix = getattr(self, name)
            for line in matrix:
                line[:] = [0.0] * len(line)
            saved = state[name]
            if len(saved) != len(cols) or any(len(line) != len(cols) for line in saved):
                raise ValueError(f"leaf statistics {name!r} of the wrong shape")
            for i, a in enumerate(cols):
                for j, b in enumerate(cols):
                    matrix[a][b] = float(saved[i][j])


class TreeLeader(_TreePolicy):
    """Follow the leader, overruled per leaf of a learned tree where a version is clearly
    better there. For shadow scoring (full information: every live version is scored on every
    labelled request, so each leaf compares versions on the same requests).

    The context-free choice is :class:`~banditops.policies.FollowTheLeader`'s (over each
    version's last ``leader_window`` rewards, with its cold start: ``min_rewards``,
    ``cold_start_retry``). In the request's leaf, another version replaces it when, over the
    leaf's last ``leaf_window`` labelled requests, its paired reward difference with the
    leader (on the requests where both were scored) is positive, rests on at least
    ``min_rewards`` requests, and exceeds ``switch_z`` standard errors; the version with the
    largest such difference wins. So where the tree finds no segment (one leaf) or a leaf's
    evidence is weak, the choice is the context-free leader's.

    The tree (module docstring) is refitted every ``refit_every`` labelled requests on the
    last ``window`` (``max_depth``, ``min_samples_leaf``, ``min_impurity_decrease``,
    ``holdout``, ``split_z``). Deterministic: the chosen version has propensity 1. Rewards
    without a context count for the leader only. Under bandit feedback it is greedy, as the
    leader is: use :class:`TreeThompson` there.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> p = TreeLeader(dimension=8, window=2000, refit_every=200, min_samples_leaf=100)
    >>> for arm in ("a", "b"): p.add_arm(arm)
    >>> for _ in range(3000):  # a is right when slot 1 is negative, b when it is positive
    ...     x = np.zeros(8); x[0] = 1.0; x[1] = rng.normal()
    ...     good = "a" if x[1] < 0 else "b"
    ...     p.update("a", float(rng.random() < (0.9 if good == "a" else 0.6)), x)
    ...     p.observe("b", float(rng.random() < (0.9 if good == "b" else 0.6)), x)
    >>> left, right = np.eye(8)[0] - np.eye(8)[1], np.eye(8)[0] + np.eye(8)[1]
    >>> p.select(left), p.select(right)
    ('a', 'b')
    """

    key = "tree-leader"
    Params: ClassVar[type] = TreeLeaderParams
    uses_randomness = False

    def __init__(self, *, dimension: int = 256, features: tuple[str, ...] | list[str] = (),
                 window: int = 4000, refit_every: int = 250, max_depth: int = 2,
                 min_samples_leaf: int = 300, min_impurity_decrease: float = 0.0,
                 holdout: float = 0.25, split_z: float = 0.0, leaf_window: int = 500,
                 switch_z: float = 1.5, leader_window: int = 1000, min_rewards: int = 30,
                 cold_start_retry: int = 100, seed: int | None = None) -> None:
        params = TreeLeaderParams(dimension, features, window, refit_every, max_depth,
                                  min_samples_leaf, min_impurity_decrease, holdout, split_z,
                                  leaf_window, switch_z, leader_window, min_rewards,
                                  cold_start_retry)
        self._leader = FollowTheLeader(params.leader_window, min_rewards=params.min_rewards,
                                       cold_start_retry=params.cold_start_retry)
        self._pairs: dict[int, _PairStats] = {0: _PairStats(8)}
        super().__init__(params, seed=seed)

    # ------------------------------------------------------------------ arms
    def _on_add(self, name: str) -> None:
        info = self._arms[name]
        self._leader.add_arm(name, validation_score=info.validation_score,
                             released_at=info.released_at)
        super()._on_add(name)

    def _on_remove(self, name: str) -> None:
        self._leader.remove_arm(name)
        super()._on_remove(name)

    def _stats_add_arm(self, col: int) -> None:
        for stats in self._pairs.values():
            stats.grow(self._window.R.shape[1])
            stats.drop(col)

    def _stats_drop_arm(self, col: int) -> None:
        for stats in self._pairs.values():
            stats.drop(col)

    # ------------------------------------------------------------ statistics
    def _stats_close(self, slot: int) -> None:
        """A complete row joins its leaf's statistics (the oldest leaves past
        ``leaf_window``)."""
        R = self._window.R
        stats = self._pairs[int(self._window.leaf[slot])]
        stats.rows.append(slot)
        stats.add(R[slot].tolist())
        if len(stats.rows) > self.p.leaf_window:
            stats.remove(R[stats.rows.popleft()].tolist())

    def _stats_evict(self, slot: int) -> None:
        stats = self._pairs[int(self._window.leaf[slot])]
        if stats.rows and stats.rows[0] == slot:
            stats.rows.popleft()
            stats.remove(self._window.R[slot].tolist())

    def _rebuild_stats(self, slots: np.ndarray) -> None:
        window = self._window
        columns = window.R.shape[1]
        self._pairs = {}
        leaves = window.leaf[slots]
        for leaf in self._tree.leaves:
            stats = self._pairs[leaf] = _PairStats(columns)
            mine = slots[leaves == leaf][-self.p.leaf_window:]
            stats.rows.extend(mine.tolist())
            stats.rebuild(window.R[mine])

    # ------------------------------------------------------------- decisions
    def _deviation(self, leader: str, context: Any) -> str:
        """The version the request's leaf prefers to ``leader``, or ``leader``."""
        leaf = self._leaf(context)
        stats = self._pairs[leaf]
        if not self._leader.is_warm(leader):
            return leader
        g = self._cols[leader]
        n, d, d2 = stats.n, stats.d, stats.d2
        need, z = self.p.min_rewards, self.p.switch_z
        best, best_gain = leader, 0.0
        for name, col in self._cols.items():
            count = n[col][g]
            if col == g or count < need:
                continue
            gain = d[col][g] / count
            if gain <= best_gain:
                continue
            spread = d2[col][g] / count - gain * gain
            if gain > z * math.sqrt(max(spread, 0.0) / count):
                best, best_gain = name, gain
        return best

    def select(self, context: Any = None) -> str:
        leader = self._leader.select()
        if context is None or self._tree.left[0] == -1:
            if context is not None:
                self._vector(context)
            return leader
        return self._deviation(leader, context)

    def _next_choice(self, context: Any) -> str:
        probabilities = self._leader.probabilities()
        leader = max(probabilities, key=probabilities.__getitem__)
        if context is None or self._tree.left[0] == -1:
            return leader
        return self._deviation(leader, context)

    def probabilities(self, context: Any = None) -> dict[str, float]:
        if not self._arms:
            return {}
        chosen = self._next_choice(context)
        return {name: 1.0 if name == chosen else 0.0 for name in self._arms}

    def propensity(self, name: str, context: Any = None) -> float:
        self._require_arm(name)
        return 1.0 if name == self._next_choice(context) else 0.0

    def choose(self, context: Any = None) -> tuple[str, float]:
        return self.select(context), 1.0  # deterministic

    def update(self, name: str, reward: float, context: Any = None) -> None:
        if type(reward) is not float or not 0.0 <= reward <= 1.0:
            reward = validate_reward(reward)
        if name not in self._cols:
            self._require_arm(name)
        self._leader.update(name, reward)
        self._learn(name, reward, context, served=True)

    def observe(self, name: str, reward: float, context: Any = None) -> None:
        """As :meth:`update` (full information: whoever served the request), but the
        reward joins the row of the request being assembled."""
        if type(reward) is not float or not 0.0 <= reward <= 1.0:
            reward = validate_reward(reward)
        if name not in self._cols:
            self._require_arm(name)
        self._leader.update(name, reward)
        self._learn(name, reward, context, served=False)

    # ---------------------------------------------------------------- state
    def _stats_state(self) -> dict[str, Any]:
        state = self._base_state()
        state["leader"] = self._leader._stats_state()
        cols = [self._cols[name] for name in self._arms]
        state["leaves"] = {str(leaf): stats.state(cols) for leaf, stats in self._pairs.items()}
        return state

    def _load_stats(self, stats: dict[str, Any]) -> None:
        self._load_base(stats)
        self._leader._load_stats(stats["leader"])
        slots = self._window.order()
        # The rows of each leaf (the row being assembled is not in its leaf yet); the sums
        # come from the state, as they were accumulated.
        self._rebuild_stats(slots[slots != self._pending])
        cols = [self._cols[name] for name in self._arms]
        if set(stats["leaves"]) != {str(leaf) for leaf in self._pairs}:
            raise ValueError("leaf statistics do not match the tree's leaves")
        for leaf, saved in stats["leaves"].items():
            self._pairs[int(leaf)].load(saved, cols)


# ------------------------------------------------------------------- TreeThompson
class _ArmWindows:
    """One leaf: per arm column, the rows of its last ``size`` rewards there, their count
    and sum (a Beta posterior's evidence)."""

    __slots__ = ("n", "rows", "s")

    def __init__(self) -> None:
        self.rows: dict[int, deque[int]] = {}
        self.n: dict[int, float] = {}
        self.s: dict[int, float] = {}

    def add(self, col: int, slot: int, reward: float, size: int, R: np.ndarray) -> None:
        rows = self.rows.setdefault(col, deque())
        rows.append(slot)
        self.n[col] = self.n.get(col, 0.0) + 1.0
        self.s[col] = self.s.get(col, 0.0) + reward
        if len(rows) > size:
            self._pop(col, R)

    def _pop(self, col: int, R: np.ndarray) -> None:
        old = self.rows[col].popleft()
        self.n[col] -= 1.0
        total = self.s[col] - float(R[old, col])
        self.s[col] = total if total > 0.0 else 0.0

    def evict(self, slot: int, R: np.ndarray) -> None:
        for col, rows in self.rows.items():
            if rows and rows[0] == slot:
                self._pop(col, R)

    def drop(self, col: int) -> None:
        self.rows.pop(col, None)
        self.n.pop(col, None)
        self.s.pop(col, None)


class TreeThompson(_TreePolicy):
    """Thompson sampling per leaf of a learned tree: for bandit feedback.

    In the request's leaf each version has a Beta posterior, Beta(1 + sum, 1 + count - sum)
    (fractional rewards count as fractional successes), over its last ``leaf_window`` rewards
    there plus a prior: its mean over its last ``window`` rewards anywhere, worth
    ``prior_weight`` rewards (at most as many as it has). The version with the highest draw
    serves. A new version has no prior and no rewards, so its posterior is uniform and it is
    tried at once (no separate cold start); a leaf's window forgets, as drift needs, and the
    prior keeps a version that stopped being served in a leaf from looking new there again
    once its rewards leave the window.

    The tree (module docstring) needs a reward for every version on each fitted row, and
    under bandit feedback a row has only the served one's. Its targets are then
    inverse-propensity estimates: ``r / p`` for the served version, 0 for the others
    (Horvitz & Thompson, 1952; unbiased whatever served), with ``p`` the propensity this
    policy gave the served version when it chose (remembered for the last
    :data:`MEMORY` decisions by their context; feedback for a decision it no longer
    remembers, e.g. made by another replica, joins the leaf statistics but not the fit),
    floored at ``propensity_floor`` to bound the weights. Pruning compares the routing's
    importance-weighted value on the held-out rows. Where enough rows carry every version's
    reward (shadow scoring), those are used instead, as :class:`TreeLeader` does.

    Propensities are exact: the chance that the chosen version's draw is the largest of
    independent Betas, by numerical integration
    (:func:`banditops.policies.maxprob.beta_max_probability`).
    """

    key = "tree-thompson"
    Params: ClassVar[type] = TreeThompsonParams
    _bandit = True

    def __init__(self, *, dimension: int = 256, features: tuple[str, ...] | list[str] = (),
                 window: int = 4000, refit_every: int = 250, max_depth: int = 2,
                 min_samples_leaf: int = 300, min_impurity_decrease: float = 0.0,
                 holdout: float = 0.25, split_z: float = 0.0, leaf_window: int = 500,
                 prior_weight: float = 20.0, propensity_floor: float = 0.05,
                 seed: int | None = None) -> None:
        params = TreeThompsonParams(dimension, features, window, refit_every,
                                    max_depth, min_samples_leaf, min_impurity_decrease,
                                    holdout, split_z, leaf_window, prior_weight,
                                    propensity_floor)
        self._leaves: dict[int, _ArmWindows] = {0: _ArmWindows()}
        self._memory: OrderedDict[int, list[list[Any]]] = OrderedDict()
        self._memory_size = 0
        # Each arm's last ``window`` rewards, whatever the context (or none): the prior.
        self._global: dict[str, deque[float]] = {}
        self._global_sum: dict[str, float] = {}
        super().__init__(params, seed=seed)

    def _stats_add_arm(self, col: int) -> None:
        for stats in self._leaves.values():
            stats.drop(col)

    def _stats_drop_arm(self, col: int) -> None:
        for stats in self._leaves.values():
            stats.drop(col)

    def _on_add(self, name: str) -> None:
        self._global[name] = deque()
        self._global_sum[name] = 0.0
        super()._on_add(name)

    def _on_remove(self, name: str) -> None:
        del self._global[name], self._global_sum[name]
        super()._on_remove(name)

    def _stats_reward(self, slot: int, col: int, reward: float) -> None:
        self._leaves[int(self._window.leaf[slot])].add(col, slot, reward, self.p.leaf_window,
                                                        self._window.R)

    def _stats_evict(self, slot: int) -> None:
        self._leaves[int(self._window.leaf[slot])].evict(slot, self._window.R)

    def _rebuild_stats(self, slots: np.ndarray) -> None:
        window = self._window
        self._leaves = {leaf: _ArmWindows() for leaf in self._tree.leaves}
        leaves = window.leaf[slots]
        size = self.p.leaf_window
        for leaf, stats in self._leaves.items():
            mine = slots[leaves == leaf]
            for col in self._cols.values():
                rows = mine[~np.isnan(window.R[mine, col])][-size:]
                if len(rows):
                    stats.rows[col] = deque(rows.tolist())
                    stats.n[col] = float(len(rows))
                    stats.s[col] = float(window.R[rows, col].sum())

    def _fit_data(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        full = super()._fit_data(slots)
        if full is not None:
            return full
        window = self._window
        cols = [self._cols[name] for name in self._arms]
        if len(cols) < 2:
            return None
        served = window.served[slots]
        known = ~np.isnan(window.propensity[slots]) & np.isin(served, cols)
        rows = slots[known]
        if len(rows) < min_fit_rows(self.p):
            return None
        position = {col: i for i, col in enumerate(cols)}
        which = np.array([position[int(c)] for c in window.served[rows]])
        weight = 1.0 / np.maximum(window.propensity[rows], self.p.propensity_floor)
        values = np.zeros((len(rows), len(cols)))
        values[np.arange(len(rows)), which] = window.R[rows, window.served[rows]] * weight
        return rows, values - values.mean(axis=1, keepdims=True), values

    # ------------------------------------------------------------- decisions
    def _global_reward(self, name: str, reward: float) -> None:
        """Any reward of ``name``: into its last ``window`` rewards (the prior)."""
        rewards = self._global[name]
        rewards.append(reward)
        total = self._global_sum[name] + reward
        if len(rewards) > self.p.window:
            total -= rewards.popleft()
        self._global_sum[name] = total if total > 0.0 else 0.0

    def _posteriors(self, context: Any) -> tuple[list[str], list[float], list[float]]:
        """Beta parameters of every live arm in the request's leaf (in arm order): the
        arm's recent mean over all requests, worth ``prior_weight`` rewards (or as many as it
        has), and its last ``leaf_window`` rewards in the leaf. Without a context: its last
        ``window`` rewards."""
        names = list(self._arms)
        alpha, beta = [], []
        if context is None:
            for name in names:
                n, s = float(len(self._global[name])), self._global_sum[name]
                alpha.append(1.0 + s)
                beta.append(1.0 + max(n - s, 0.0))
            return names, alpha, beta
        stats = self._leaves[self._leaf(context)]
        weight = self.p.prior_weight
        for name in names:
            col = self._cols[name]
            n, s = stats.n.get(col, 0.0), stats.s.get(col, 0.0)
            count = len(self._global[name])
            if count and weight > 0.0:  # never worth more rewards than the arm has
                prior = min(weight, float(count))
                n, s = n + prior, s + prior * self._global_sum[name] / count
            alpha.append(1.0 + s)
            beta.append(1.0 + max(n - s, 0.0))
        return names, alpha, beta

    def _draw(self, alpha: list[float], beta: list[float]) -> int:
        betavariate = self._rng.betavariate
        best, best_value = 0, -math.inf
        for i, (a, b) in enumerate(zip(alpha, beta, strict=True)):
            value = betavariate(a, b)
            if value > best_value:
                best, best_value = i, value
        return best

    def select(self, context: Any = None) -> str:
        self._require_any_arm()
        names, alpha, beta = self._posteriors(context)
        return names[self._draw(alpha, beta)]

    def probabilities(self, context: Any = None) -> dict[str, float]:
        if not self._arms:
            return {}
        names, alpha, beta = self._posteriors(context)
        return {name: _max_probability(i, alpha, beta) for i, name in enumerate(names)}

    def propensity(self, name: str, context: Any = None) -> float:
        self._require_arm(name)
        names, alpha, beta = self._posteriors(context)
        return _max_probability(names.index(name), alpha, beta)

    def choose(self, context: Any = None) -> tuple[str, float]:
        self._require_any_arm()
        names, alpha, beta = self._posteriors(context)
        i = self._draw(alpha, beta)
        propensity = chosen_probability(_max_probability(i, alpha, beta))
        if context is not None:
            self._remember(self._vector(context), names[i], propensity)
        return names[i], propensity

    def _remember(self, x: np.ndarray, name: str, propensity: float) -> None:
        key = zlib.crc32(x.astype(np.float32).tobytes())
        self._memory.setdefault(key, []).append([name, propensity])
        self._memory.move_to_end(key)
        self._memory_size += 1
        while self._memory_size > MEMORY:
            _, dropped = self._memory.popitem(last=False)
            self._memory_size -= len(dropped)

    def _recall(self, x32: np.ndarray, name: str) -> float:
        key = zlib.crc32(x32.tobytes())
        entries = self._memory.get(key)
        if entries:
            for i, (served, propensity) in enumerate(entries):
                if served == name:
                    del entries[i]
                    self._memory_size -= 1
                    if not entries:
                        del self._memory[key]
                    return float(propensity)
        return math.nan

    def update(self, name: str, reward: float, context: Any = None) -> None:
        reward = validate_reward(reward)
        slot = self._learn(name, reward, context, served=True)
        if slot >= 0:
            self._window.propensity[slot] = self._recall(self._window.X[slot], name)
        self._global_reward(name, reward)

    def observe(self, name: str, reward: float, context: Any = None) -> None:
        """A shadow reward: joins the leaf's posterior and the row (not the served arm)."""
        reward = validate_reward(reward)
        self._learn(name, reward, context, served=False)
        self._global_reward(name, reward)

    # ---------------------------------------------------------------- state
    def _stats_state(self) -> dict[str, Any]:
        state = self._base_state()
        names = {col: name for name, col in self._cols.items()}
        state["leaves"] = {str(leaf): {names[col]: [stats.n[col], stats.s[col]]
                                       for col in stats.n}
                           for leaf, stats in self._leaves.items()}
        state["memory"] = [[key, entries] for key, entries in self._memory.items()]
        state["global"] = {name: [_encode_b64(np.array(self._global[name], dtype=float)),
                                  self._global_sum[name]] for name in self._arms}
        return state

    def _load_stats(self, stats: dict[str, Any]) -> None:
        self._load_base(stats)
        self._rebuild_stats(self._window.order())  # the rows; the sums from the state
        if set(stats["leaves"]) != {str(leaf) for leaf in self._leaves}:
            raise ValueError("leaf statistics do not match the tree's leaves")
        for leaf, saved in stats["leaves"].items():
            target = self._leaves[int(leaf)]
            for name, (n, s) in saved.items():
                col = self._cols[name]
                if float(n) != len(target.rows.get(col, ())):
                    raise ValueError(f"leaf {leaf}: {name!r} counts {n} rewards, its window "
                                     f"holds {len(target.rows.get(col, ()))}")
                target.n[col], target.s[col] = float(n), float(s)
        for name in self._arms:
            encoded, total = stats["global"][name]
            count = len(base64.b64decode(encoded)) // 8
            rewards = _decode_b64(encoded, np.float64, count)
            if count > self.p.window or ((rewards < 0.0) | (rewards > 1.0)).any():
                raise ValueError(f"{name!r}: {count} rewards, or some outside [0, 1]")
            self._global[name] = deque(rewards.tolist())
            self._global_sum[name] = float(total)
        self._memory = OrderedDict()
        self._memory_size = 0
        for key, entries in stats["memory"]:
            self._memory[int(key)] = [[str(n), float(p)] for n, p in entries]
            self._memory_size += len(entries)


def _max_probability(i: int, alpha: list[float], beta: list[float]) -> float:
    """The chance that Beta draw ``i`` is the largest of independent Betas (exact)."""
    return 1.0 if len(alpha) == 1 else float(beta_max_probability(i, alpha, beta))


__all__ = ["TreeArrays", "TreeLeader", "TreeLeaderParams", "TreeThompson",
           "TreeThompsonParams", "fit_tree"]
