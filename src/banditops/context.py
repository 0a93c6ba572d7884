"""Request features as a fixed-length vector: what a contextual policy routes on.

A contextual policy (:class:`~banditops.policies.base.ContextualPolicy`) sees each request's
features. They arrive as a mapping ``{name: value}`` (the service's instances) or a table row
(the replay), with any mix of numbers, strings, booleans and nulls, and the schema may grow
as clients add features. :class:`ContextEncoder` turns them into a vector of fixed length
with the *hashing trick* (Weinberger et al., 2009, "Feature hashing for large scale multitask
learning"; as Vowpal Wabbit does):

- slot 0 is a bias, always 1;
- a number ``x`` of feature ``name`` goes to slot ``h(name)`` as ``sign(x) * log1p(|x|)``
  (heavy-tailed amounts stay on a scale a linear model can use; order is kept, so a tree's
  splits are unchanged);
- a string or boolean ``v`` adds 1 at slot ``h("name=v")`` (one-hot, hashed: unseen
  categories need no vocabulary, and the vector never changes length);
- a null (None, NaN, a missing feature named in ``features``) adds 1 at ``h("name=null")``.

``h`` is CRC-32 modulo ``dimension - 1``, plus 1: stable across processes and machines
(Python's ``hash`` of a string is salted per process), so a policy's saved state means the
same thing after a restart or on another replica. Collisions are possible and harmless in
expectation; a larger ``dimension`` makes them rarer at the cost of a bigger model.

No state is learned: the encoder is a pure function of its parameters, so it needs no
warm-up and nothing of it is saved beyond ``dimension`` and ``features``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from banditops.errors import InvalidParameterError

MAX_DIMENSION = 4096
SQUASH_CAP = 30.0


def check_dimension(dimension: object) -> int:
    if isinstance(dimension, bool) or not isinstance(dimension, int) \
            or not 2 <= dimension <= MAX_DIMENSION:
        raise InvalidParameterError(
            f"dimension must be an integer in [2, {MAX_DIMENSION}], got {dimension!r}")
    return dimension


def check_features(features: object) -> tuple[str, ...]:
    """A tuple of distinct, non-empty feature names (empty: use every feature that comes)."""
    if isinstance(features, str) or not isinstance(features, Sequence):
        raise InvalidParameterError(
            f"features must be a list of feature names, e.g. [\"age\", \"plan\"] (on the "
            f"command line: --param 'features=[\"age\",\"plan\"]'), got {features!r}")
    names = tuple(features)
    for name in names:
        if not isinstance(name, str) or not name or len(name) > 200:
            raise InvalidParameterError(
                f"features must be non-empty strings of at most 200 characters, got {name!r}")
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"features must not name a feature twice: {list(names)}")
    return names


@lru_cache(maxsize=65536)
def _slot(key: str, dimension: int) -> int:
    return 1 + zlib.crc32(key.encode("utf-8", "surrogatepass")) % (dimension - 1)


def _is_null(value: Any) -> bool:
    """None, NaN of any float type, pandas' NA and NaT."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _entry(name: str, value: Any, dimension: int) -> tuple[int, float]:
    """(slot, amount) that one feature adds to the vector (see the module)."""
    if _is_null(value):
        return _slot(f"{name}=null", dimension), 1.0
    if isinstance(value, bool | str | np.bool_):
        return _slot(f"{name}={value}", dimension), 1.0
    if isinstance(value, int | float | np.integer | np.floating):
        return _slot(name, dimension), _squash(float(value))
    return _slot(f"{name}={value}", dimension), 1.0


def _squash(x: float) -> float:
    # Capped at 30 (|x| about 1e13): one absurd value must not dominate a linear model.
    return math.copysign(min(math.log1p(abs(x)), SQUASH_CAP), x)


class ContextEncoder:
    """Hash a request's features into a vector of ``dimension`` floats (see the module).

    >>> encoder = ContextEncoder(dimension=16)
    >>> v = encoder.encode({"age": 37, "job": "clerk", "note": None})
    >>> v.shape, float(v[0]), round(float(v[encoder.slot("age")]), 4)
    ((16,), 1.0, 3.6376)
    >>> bool((encoder.encode({"age": 37, "job": "clerk", "note": None}) == v).all())
    True
    """

    __slots__ = ("dimension", "features")

    def __init__(self, dimension: int = 64, features: Sequence[str] = ()) -> None:
        self.dimension = check_dimension(dimension)
        self.features = check_features(features)

    def slot(self, key: str) -> int:
        """The slot of a numeric feature ``key``, or of a category ``"name=value"``."""
        return _slot(key, self.dimension)

    def _items(self, context: Mapping[str, Any]) -> list[tuple[str, Any]]:
        if self.features:
            return [(name, context.get(name)) for name in self.features]
        return [(str(name), value) for name, value in context.items()]

    def encode(self, context: Mapping[str, Any] | np.ndarray) -> np.ndarray:
        """The vector of one request: a mapping of features, or an already-encoded vector."""
        if isinstance(context, np.ndarray):
            return self.check_vector(context)
        if not isinstance(context, Mapping):
            raise InvalidParameterError(
                "a context must be a mapping of feature names to values or an encoded vector, "
                f"got {type(context).__name__}")
        vector = np.zeros(self.dimension)
        vector[0] = 1.0
        dimension = self.dimension
        for name, value in self._items(context):
            slot, amount = _entry(name, value, dimension)
            vector[slot] += amount
        return vector

    def check_vector(self, vector: np.ndarray) -> np.ndarray:
        if vector.shape != (self.dimension,) or not np.isfinite(vector).all():
            raise InvalidParameterError(
                f"an encoded context must be {self.dimension} finite numbers, got shape "
                f"{vector.shape}")
        return vector.astype(float, copy=False)

    def encode_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Every row of a table, shape (rows, dimension): column by column, each distinct
        value hashed once (a replay encodes hundreds of thousands of rows)."""
        names = list(self.features) or [str(c) for c in frame.columns]
        out = np.zeros((len(frame), self.dimension))
        out[:, 0] = 1.0
        rows = np.arange(len(frame))
        for name in names:
            if name not in frame.columns:
                out[:, _slot(f"{name}=null", self.dimension)] += 1.0
                continue
            column = frame[name]
            numeric = (pd.api.types.is_numeric_dtype(column)
                       and not pd.api.types.is_bool_dtype(column))
            if numeric:
                values = column.to_numpy(dtype=float, na_value=np.nan)
                null = np.isnan(values)
                with np.errstate(invalid="ignore"):
                    squashed = np.sign(values) * np.minimum(np.log1p(np.abs(values)),
                                                            SQUASH_CAP)
                out[~null, _slot(name, self.dimension)] += squashed[~null]
                out[null, _slot(f"{name}=null", self.dimension)] += 1.0
                continue
            # Text, categories, booleans, or a mix (an object column may hold numbers too:
            # each distinct value is encoded as encode() would encode it).
            codes, uniques = pd.factorize(column, use_na_sentinel=True)
            entries = [_entry(name, value, self.dimension) for value in uniques]
            entries.append((_slot(f"{name}=null", self.dimension), 1.0))
            slots = np.array([slot for slot, _ in entries], dtype=np.int64)
            amounts = np.array([amount for _, amount in entries])
            # code -1 (null) picks the last entry
            np.add.at(out, (rows, slots[codes]), amounts[codes])
        return out

    def params(self) -> dict[str, Any]:
        return {"dimension": self.dimension, "features": list(self.features)}
