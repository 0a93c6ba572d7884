"""ContextEncoder: the hashing trick that turns a request's features into a vector."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zlib

import numpy as np
import pandas as pd
import pytest

from banditops.context import ContextEncoder
from banditops.errors import InvalidParameterError


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "age": [37, 52, 19, 0],
        "income": [52_000.5, -3.0, np.nan, 1e40],
        "job": ["clerk", "chef", None, "clerk"],
        "member": [True, False, True, False],
        "band": pd.Categorical(["low", "high", "low", None]),
        "count": pd.Series([1, None, 3, 4], dtype="Int64"),
        "mixed": ["a", 2.5, None, 7],
    })


def test_layout_bias_numbers_categories_and_nulls():
    encoder = ContextEncoder(dimension=4096)
    vector = encoder.encode({"age": 37, "job": "clerk", "note": None, "debt": -9.0,
                             "member": True})
    assert vector.shape == (4096,) and vector.dtype == np.float64
    assert vector[0] == 1.0
    assert vector[encoder.slot("age")] == pytest.approx(math.log1p(37))
    assert vector[encoder.slot("debt")] == pytest.approx(-math.log1p(9))
    assert vector[encoder.slot("job=clerk")] == 1.0
    assert vector[encoder.slot("note=null")] == 1.0
    assert vector[encoder.slot("member=True")] == 1.0
    assert np.count_nonzero(vector) == 6
    # The slot is CRC-32 of the key, never Python's salted hash.
    assert encoder.slot("job=clerk") == 1 + zlib.crc32(b"job=clerk") % 4095


def test_nulls_of_every_kind_go_to_the_null_slot_and_huge_values_are_capped():
    encoder = ContextEncoder(dimension=256)
    null = encoder.slot("x=null")
    for value in (None, float("nan"), np.float32("nan"), pd.NA, pd.NaT):
        vector = encoder.encode({"x": value})
        assert vector[null] == 1.0 and np.isfinite(vector).all(), value
    capped = encoder.encode({"x": 1e300, "y": -math.inf})
    assert capped[encoder.slot("x")] == 30.0 and capped[encoder.slot("y")] == -30.0


def test_unseen_categories_need_no_vocabulary_and_features_restricts_the_names():
    encoder = ContextEncoder(dimension=512, features=("job", "age"))
    seen = encoder.encode({"job": "clerk", "age": 30, "ignored": "x"})
    unseen = encoder.encode({"job": "astronaut", "age": 30})
    assert seen.shape == unseen.shape == (512,)
    assert unseen[encoder.slot("job=astronaut")] == 1.0
    assert seen[encoder.slot("ignored=x")] == 0.0
    missing = encoder.encode({"job": "clerk"})  # a named feature that does not come is null
    assert missing[encoder.slot("age=null")] == 1.0


def test_encode_frame_equals_encode_of_each_row():
    for features in ((), ("job", "age", "absent", "mixed")):
        encoder = ContextEncoder(dimension=64, features=features)
        frame = _frame()
        matrix = encoder.encode_frame(frame)
        assert matrix.shape == (len(frame), 64)
        for i, record in enumerate(frame.to_dict("records")):
            np.testing.assert_array_equal(matrix[i], encoder.encode(record), err_msg=str(i))


def test_an_encoded_vector_passes_through_and_bad_input_is_refused():
    encoder = ContextEncoder(dimension=8)
    vector = encoder.encode({"a": 1})
    assert encoder.encode(vector) is vector
    with pytest.raises(InvalidParameterError, match="8 finite numbers"):
        encoder.encode(np.zeros(9))
    with pytest.raises(InvalidParameterError, match="8 finite numbers"):
        encoder.encode(np.full(8, np.nan))
    with pytest.raises(InvalidParameterError, match="mapping of feature names"):
        encoder.encode([1, 2, 3])
    for dimension in (1, 0, 4097, 2.5, True, "64"):
        with pytest.raises(InvalidParameterError, match="dimension must be an integer"):
            ContextEncoder(dimension=dimension)
    for features in ("age", ["a", "a"], [""], [3]):
        with pytest.raises(InvalidParameterError):
            ContextEncoder(features=features)


def test_slots_are_the_same_in_another_process():
    """A policy's saved state must mean the same on another replica: Python salts str
    hashes per process (PYTHONHASHSEED), CRC-32 does not."""
    context = {"job": "clerk", "city": "Lyon", "age": 44, "x": None}
    script = ("import json, sys; from banditops.context import ContextEncoder; "
              "print(json.dumps(ContextEncoder(dimension=128).encode("
              "json.loads(sys.argv[1])).tolist()))")
    here = ContextEncoder(dimension=128).encode(context).tolist()
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", script, json.dumps(context)],
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": hash_seed})
        assert json.loads(out.stdout) == here
