"""What a model receives: one instance, or a version's share of a batch in one call.

A batch routed between versions is cut into one slice per version. A DataFrame or 2-D array
stays one (``iloc`` / fancy indexing), so scikit-learn gets the columns and dtypes the caller
built and no row is copied into a dict; single rows are made only where a row must be
predicted alone (a version whose batch call failed, a fallback). On 10,000 rows of Adult,
per-row dicts cost 0.3 s and the frame rebuilt from them 13 ms; a third sliced, 0.4 ms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from banditops.errors import ModelError


def batch_of_one(x: Any) -> Any:
    """What ``model.predict`` receives for one instance: a one-row frame or a one-row list."""
    if isinstance(x, Mapping):
        import pandas as pd

        return pd.DataFrame([x])
    return [x]


def plain(value: Any) -> Any:
    """numpy scalars become Python scalars, so decisions are JSON-safe."""
    return value.item() if isinstance(value, np.generic) else value


def plain_list(output: Any) -> list[Any]:
    """A model's predictions as a list of plain scalars (one ``tolist`` for a numeric array)."""
    if isinstance(output, np.ndarray) and output.ndim == 1 and output.dtype != object:
        return output.tolist()
    return [plain(p) for p in output]


def single_predictor(model: Any) -> Callable[[Any], Any]:
    """Prefer the model's own ``predict_one`` (River's convention); else wrap ``predict``."""
    predict_one = getattr(model, "predict_one", None)
    if callable(predict_one):
        return predict_one
    predict = model.predict
    return lambda x: plain(predict(batch_of_one(x))[0])


def _is_frame(instances: Any) -> bool:
    return hasattr(instances, "iloc") and hasattr(instances, "columns")


class Rows:
    """A batch of instances as the caller passed it: a DataFrame, a 2-D array, or any
    iterable of instances (dicts of features, feature rows, whatever the models take)."""

    __slots__ = ("_array", "_frame", "_list")

    def __init__(self, instances: Iterable[Any]) -> None:
        self._frame: Any = None
        self._array: np.ndarray | None = None
        self._list: list[Any] | None = None
        if _is_frame(instances):
            self._frame = instances
        elif isinstance(instances, np.ndarray) and instances.ndim == 2:
            self._array = instances
        else:
            self._list = list(instances)

    @property
    def frame(self) -> Any:
        """The DataFrame the batch came as, or None."""
        return self._frame

    @property
    def array(self) -> np.ndarray | None:
        """The 2-D array the batch came as, or None."""
        return self._array

    @property
    def instances(self) -> list[Any] | None:
        """The list of instances the batch came as (frame and array batches: None)."""
        return self._list

    def __len__(self) -> int:
        if self._frame is not None:
            return len(self._frame)
        if self._array is not None:
            return len(self._array)
        return len(self._list)  # type: ignore[arg-type]

    def row(self, index: int) -> Any:
        """One instance, as :meth:`~banditops.Deployment.predict` takes it (a frame's row
        as a dict of features, an array's as a 1-D array)."""
        if self._frame is not None:
            return self._frame.iloc[index].to_dict()
        if self._array is not None:
            return self._array[index]
        return self._list[index]  # type: ignore[index]

    def records(self, indexes: Sequence[int]) -> list[Any]:
        """The instances at ``indexes`` one by one (what ``predict_many`` takes)."""
        if self._frame is not None:
            return self._part(indexes).to_dict("records")
        if self._array is not None:
            return list(self._part(indexes))
        rows = self._list
        return [rows[i] for i in indexes]  # type: ignore[index]

    def take(self, indexes: Sequence[int]) -> Any:
        """The rows at ``indexes`` as one ``predict`` argument: a slice of the frame or
        array; for a list, a frame built from its mappings, else the list itself."""
        if self._list is None:
            return self._part(indexes)
        rows = self.records(indexes)
        if rows and all(isinstance(x, Mapping) for x in rows):
            import pandas as pd

            return pd.DataFrame(rows)
        return rows

    def _part(self, indexes: Sequence[int]) -> Any:
        whole = self._frame if self._frame is not None else self._array
        if len(indexes) == len(whole):  # indexes are increasing: all of them is the whole
            return whole
        positions = np.fromiter(indexes, np.intp, len(indexes))
        return whole.iloc[positions] if self._frame is not None else whole[positions]


def predict_rows(model: Any, rows: Rows, indexes: Sequence[int]) -> list[Any]:
    """The model's predictions for the rows at ``indexes`` (increasing), in one call where
    the model allows it (``predict_many``, or ``predict``); else one call per row."""
    many = getattr(model, "predict_many", None)
    if callable(many):
        out = list(many(rows.records(indexes)))
    elif callable(getattr(model, "predict", None)):
        out = plain_list(model.predict(rows.take(indexes)))
    else:
        out = [model.predict_one(rows.row(i)) for i in indexes]
    if len(out) != len(indexes):
        raise ModelError(f"model returned {len(out)} predictions for {len(indexes)} rows")
    return out
