"""Model artifacts without a server: what a .skops file may hold, sha256 pinning, paths,
pickle opt-in, content checks, smoke tests and the slow-call rule."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn import (
    calibration,
    ensemble,
    linear_model,
    naive_bayes,
    neighbors,
    neural_network,
    pipeline,
    preprocessing,
    svm,
    tree,
)
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.model_selection import FixedThresholdClassifier

from banditops.errors import ArtifactError, ModelTimeoutError
from banditops.service.artifacts import (
    SKOPS_TYPES,
    ServedModel,
    SlowCalls,
    check_in_subprocess,
    check_indices,
    load_artifact,
    smoke_test,
)
from banditops.simulation import datasets, models

ROWS = 400


# ------------------------------------------------------------------ helpers
def dump(model, folder: Path, name: str) -> Path:
    path = folder / name
    sio.dump(model, path)
    return path


def rewrite(path: Path, edit) -> None:
    """Rewrite a skops zip: edit(schema, files) may change the schema and the stored arrays."""
    with zipfile.ZipFile(path) as source:
        files = {name: source.read(name) for name in source.namelist()}
    schema = json.loads(files.pop("schema.json"))
    edit(schema, files)
    with zipfile.ZipFile(path, "w") as target:
        target.writestr("schema.json", json.dumps(schema))
        for name, content in files.items():
            target.writestr(name, content)


def json_node(value) -> dict:
    return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
            "content": json.dumps(value), "is_json": True}


def reduce_call(module: str, name: str, *args) -> dict:
    """The node skops 0.16 builds for ``name(*args)`` (ConstructorFromReduceNode)."""
    return {"__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode",
            "content": {"__class__": "tuple", "__module__": "builtins",
                        "__loader__": "TupleNode", "content": [json_node(a) for a in args]}}


def add_attribute(schema: dict, name: str, node: dict) -> None:
    """Give the root estimator one more attribute (its state is a DictNode)."""
    state = schema["content"]
    state["content"][name] = node
    state["key_types"]["content"].append(
        {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"})


def small_xy(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)


@pytest.fixture(scope="module")
def real(data_dir) -> dict[str, datasets.Dataset]:
    return {name: datasets.load(name, data_dir).head(ROWS)
            for name in ("adult", "vehicle-insurance-fraud")}


@pytest.fixture(scope="module")
def adult_model(real):
    data = real["adult"]
    return models.fit(models.make_model("logistic-regression", data.features),
                      data.features, data.labels.to_numpy())


def kinds(features: pd.DataFrame) -> dict[str, str]:
    return {c: "number" if pd.api.types.is_numeric_dtype(features[c]) else "string"
            for c in features.columns}


# ------------------------------------------------------------------ code in a skops file
class Unpickles:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


CRAFTS = {
    "builtins.exec": lambda marker: reduce_call(
        "builtins", "exec", f"open({str(marker)!r}, 'w').write('ran')"),
    "os.system": lambda marker: reduce_call("os", "system", f"touch '{marker}'"),
    "numpy.load": lambda marker: reduce_call(  # numpy.load(file, None, allow_pickle=True)
        "numpy", "load", str(marker.parent / "evil.npy"), None, True),
}


@pytest.mark.parametrize("payload", sorted(CRAFTS))
def test_a_skops_file_that_would_run_code_is_refused_and_runs_nothing(tmp_path, payload):
    marker = tmp_path / "marker"
    (tmp_path / "evil.npy").write_bytes(pickle.dumps(Unpickles(marker)))
    x, y = small_xy()
    path = dump(linear_model.LogisticRegression().fit(x, y), tmp_path, "crafted.skops")
    rewrite(path, lambda schema, files: add_attribute(schema, "payload", CRAFTS[payload](marker)))

    with pytest.raises(ArtifactError, match=payload.replace(".", r"\.")):
        load_artifact(path, [tmp_path], allow_pickle=False)
    with pytest.raises(ArtifactError, match=payload.replace(".", r"\.")):
        load_artifact(path, [tmp_path], allow_pickle=True, extra_trusted=(payload,))
    assert not marker.exists()

    # the craft is real: skops, told to trust what it reports, runs the payload
    untrusted = sio.get_untrusted_types(file=path)
    assert payload in untrusted
    sio.load(path, trusted=untrusted)
    assert marker.exists()


def test_functions_are_refused_even_when_named_as_trusted(tmp_path):
    x, y = small_xy()
    model = pipeline.make_pipeline(preprocessing.FunctionTransformer(np.tanh),
                                   linear_model.LogisticRegression()).fit(x, y)
    path = dump(model, tmp_path, "function.skops")
    for extra in ((), ("numpy.tanh",
                       "sklearn.preprocessing._function_transformer.FunctionTransformer")):
        with pytest.raises(ArtifactError, match=r"numpy\.tanh \(loaded by FunctionNode"):
            load_artifact(path, [tmp_path], allow_pickle=False, extra_trusted=extra)


def test_unknown_types_are_refused_unless_named_exactly(tmp_path):
    x, y = small_xy()
    model = pipeline.make_pipeline(preprocessing.Binarizer(),
                                   linear_model.LogisticRegression()).fit(x, y)
    path = dump(model, tmp_path, "binarizer.skops")
    name = "sklearn.preprocessing._data.Binarizer"
    assert name not in SKOPS_TYPES
    with pytest.raises(ArtifactError, match=r"not trusted: \['sklearn\.preprocessing\._data"):
        load_artifact(path, [tmp_path], allow_pickle=False)
    for prefix in ("sklearn.", "sklearn.*", "sklearn"):
        with pytest.raises(ArtifactError, match="exact names"):
            load_artifact(path, [tmp_path], allow_pickle=False, extra_trusted=(prefix,))
    with pytest.raises(ArtifactError, match="not trusted"):  # a module name is no prefix
        load_artifact(path, [tmp_path], allow_pickle=False,
                      extra_trusted=("sklearn.preprocessing._data",))
    loaded = load_artifact(path, [tmp_path], allow_pickle=False, extra_trusted=(name,))
    assert loaded.model.predict(x).tolist() == model.predict(x).tolist()


def test_the_allow_list_holds_exact_names_only():
    assert all(n.count(".") >= 1 and not n.endswith(".") and "*" not in n for n in SKOPS_TYPES)
    assert "builtins.exec" not in SKOPS_TYPES and "builtins.eval" not in SKOPS_TYPES
    assert "sklearn.preprocessing._function_transformer.FunctionTransformer" not in SKOPS_TYPES


# ------------------------------------------------------------------ real models round-trip
@pytest.mark.parametrize("family", models.FAMILIES)
@pytest.mark.parametrize("dataset", ["adult", "vehicle-insurance-fraud"])
def test_every_model_family_round_trips_on_real_data(tmp_path, real, family, dataset):
    data = real[dataset]
    threshold = 0.2 if family == "logistic-regression" else 0.5  # FixedThresholdClassifier too
    model = models.fit(models.make_model(family, data.features, threshold=threshold),
                       data.features, data.labels.to_numpy())
    before = model.predict(data.features).tolist()
    path = dump(model, tmp_path, f"{family}.skops")

    loaded = load_artifact(path, [tmp_path], allow_pickle=False)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.path == path.resolve()
    assert loaded.model.predict(data.features).tolist() == before
    served = ServedModel(loaded.model, list(data.features.columns), 1.0)
    assert served.predict_many(data.features.to_dict("records")) == before
    smoke_test(served, kinds(data.features), [0, 1])


def _common_models() -> list:
    lr = linear_model.LogisticRegression
    return [
        lr(), linear_model.SGDClassifier(random_state=0), linear_model.RidgeClassifier(),
        tree.DecisionTreeClassifier(random_state=0), tree.ExtraTreeClassifier(random_state=0),
        ensemble.RandomForestClassifier(n_estimators=5, random_state=0),
        ensemble.ExtraTreesClassifier(n_estimators=5, random_state=0),
        ensemble.GradientBoostingClassifier(n_estimators=5, random_state=0),
        ensemble.HistGradientBoostingClassifier(max_iter=5, random_state=0),
        ensemble.AdaBoostClassifier(n_estimators=5, random_state=0),
        ensemble.BaggingClassifier(n_estimators=3, random_state=0),
        ensemble.VotingClassifier([("a", lr()), ("b", naive_bayes.GaussianNB())], voting="soft"),
        ensemble.StackingClassifier([("a", lr()), ("b", naive_bayes.GaussianNB())], cv=3),
        naive_bayes.GaussianNB(), naive_bayes.BernoulliNB(), svm.SVC(), svm.LinearSVC(),
        svm.SVC(probability=True, random_state=0),
        neighbors.KNeighborsClassifier(), neighbors.KNeighborsClassifier(algorithm="ball_tree"),
        neural_network.MLPClassifier(max_iter=30, random_state=0),
        calibration.CalibratedClassifierCV(lr(), cv=3),
        FixedThresholdClassifier(lr(), threshold=0.3),
        pipeline.make_pipeline(preprocessing.StandardScaler(), PCA(2), lr()),
        pipeline.make_pipeline(preprocessing.MinMaxScaler(), preprocessing.KBinsDiscretizer(4),
                               SimpleImputer(), naive_bayes.BernoulliNB()),
        linear_model.LinearRegression(), linear_model.Ridge(), ensemble.RandomForestRegressor(
            n_estimators=5, random_state=0),
        ensemble.HistGradientBoostingRegressor(max_iter=5), svm.SVR(),
        neighbors.KNeighborsRegressor(), neural_network.MLPRegressor(max_iter=30, random_state=0),
    ]


def test_common_scikit_learn_models_load_and_predict_the_same(tmp_path):
    x, y = small_xy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index, model in enumerate(_common_models()):
            target = x[:, 0] if getattr(model, "_estimator_type", "") == "regressor" else y
            model.fit(x, target)
            path = dump(model, tmp_path, f"m{index}.skops")
            loaded = load_artifact(path, [tmp_path], allow_pickle=False).model
            assert np.array_equal(loaded.predict(x), model.predict(x)), type(model).__name__


def test_mixed_type_pipeline_with_encoders_loads(tmp_path):
    x, y = small_xy()
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1],
                          "c": np.where(x[:, 2] > 0, "yes", "no"),
                          "d": np.where(x[:, 3] > 0.5, "p", "q")})
    prepare = ColumnTransformer([
        ("num", preprocessing.StandardScaler(), ["a", "b"]),
        ("one-hot", pipeline.make_pipeline(SimpleImputer(strategy="most_frequent"),
                                           preprocessing.OneHotEncoder(handle_unknown="ignore")),
         ["c"]),
        ("ordinal", preprocessing.OrdinalEncoder(handle_unknown="use_encoded_value",
                                                 unknown_value=-1), ["d"])])
    model = pipeline.make_pipeline(prepare, linear_model.LogisticRegression()).fit(frame, y)
    loaded = load_artifact(dump(model, tmp_path, "mixed.skops"), [tmp_path],
                           allow_pickle=False).model
    assert loaded.predict(frame).tolist() == model.predict(frame).tolist()


# ------------------------------------------------------------------ tampered content
def _edit_array(schema: dict, files: dict, loader: str, edit) -> None:
    """Apply edit to the .npy holding the node array of the first node of this loader."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("__loader__") == loader:
                break
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    else:
        raise AssertionError(f"no {loader} in the schema")
    content = node["content"]["content"]
    file = (content["nodes"] if "nodes" in content else content["node_ndarray"])["file"]
    array = np.load(io.BytesIO(files[file]), allow_pickle=False)
    edit(array)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    files[file] = buffer.getvalue()


def test_a_tree_pointing_outside_itself_is_refused(tmp_path):
    x, y = small_xy()
    model = tree.DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y)
    path = dump(model, tmp_path, "tree.skops")
    assert load_artifact(path, [tmp_path], allow_pickle=False)  # untouched: fine

    def out_of_range(nodes):
        nodes["left_child"][0] = 10**6

    rewrite(path, lambda schema, files: _edit_array(schema, files, "TreeNode", out_of_range))
    with pytest.raises(ArtifactError, match="points outside its tree"):
        load_artifact(path, [tmp_path], allow_pickle=False)


def test_a_boosted_tree_splitting_on_a_missing_feature_is_refused(tmp_path):
    x, y = small_xy()
    model = ensemble.HistGradientBoostingClassifier(max_iter=2, random_state=0).fit(x, y)
    path = dump(model, tmp_path, "hgb.skops")
    assert load_artifact(path, [tmp_path], allow_pickle=False)

    def find_and_edit(schema, files):
        for name, content in files.items():
            array = np.load(io.BytesIO(content), allow_pickle=False)
            if array.dtype.names and "feature_idx" in array.dtype.names:
                array["feature_idx"][0] = 40
                buffer = io.BytesIO()
                np.save(buffer, array, allow_pickle=False)
                files[name] = buffer.getvalue()
                return
        raise AssertionError("no predictor nodes found")

    rewrite(path, find_and_edit)
    with pytest.raises(ArtifactError, match="feature the model does not have"):
        load_artifact(path, [tmp_path], allow_pickle=False)


def test_a_neighbour_index_pointing_outside_its_data_is_refused(tmp_path):
    x, y = small_xy()
    model = neighbors.KNeighborsClassifier(algorithm="kd_tree").fit(x, y)
    path = dump(model, tmp_path, "knn.skops")
    assert load_artifact(path, [tmp_path], allow_pickle=False)

    def corrupt_index(schema, files):
        for name, content in files.items():
            array = np.load(io.BytesIO(content), allow_pickle=False)
            if array.ndim == 1 and sorted(array.tolist()) == list(range(len(x))):
                array[0] = 10**6  # the permutation of the rows the tree sorts
                buffer = io.BytesIO()
                np.save(buffer, array, allow_pickle=False)
                files[name] = buffer.getvalue()
                return
        raise AssertionError("no index array found")

    rewrite(path, corrupt_index)
    with pytest.raises(ArtifactError, match="neighbour index points outside its data"):
        load_artifact(path, [tmp_path], allow_pickle=False)


# ------------------------------------------------------------------ pinning and paths
def test_a_changed_artifact_is_refused_by_its_sha256(tmp_path, adult_model):
    path = dump(adult_model, tmp_path, "v1.skops")
    pinned = load_artifact(path, [tmp_path], allow_pickle=False).sha256
    assert load_artifact(path, [tmp_path], allow_pickle=False,
                         expected_sha256=pinned).sha256 == pinned
    x, y = small_xy()
    dump(linear_model.LogisticRegression().fit(x, y), tmp_path, "v1.skops")  # swapped
    with pytest.raises(ArtifactError, match=f"changed since it was registered: sha256 .* "
                                            f"expected {pinned}"):
        load_artifact(path, [tmp_path], allow_pickle=False, expected_sha256=pinned)


def test_paths_outside_the_artifact_dirs_are_refused(tmp_path, adult_model):
    allowed, outside = tmp_path / "models", tmp_path / "elsewhere"
    allowed.mkdir()
    outside.mkdir()
    target = dump(adult_model, outside, "m.skops")
    (allowed / "link.skops").symlink_to(target)
    for candidate in (target, allowed / "link.skops", allowed / ".." / "elsewhere" / "m.skops"):
        with pytest.raises(ArtifactError, match="outside the configured artifact_dirs"):
            load_artifact(candidate, [allowed], allow_pickle=False)
    with pytest.raises(ArtifactError, match="not found"):
        load_artifact(allowed / "missing.skops", [allowed], allow_pickle=False)


def test_pickles_need_the_opt_in(tmp_path):
    x, y = small_xy()
    path = tmp_path / "m.joblib"
    joblib.dump(linear_model.LogisticRegression().fit(x, y), path)
    with pytest.raises(ArtifactError, match="set allow_pickle = true"):
        load_artifact(path, [tmp_path], allow_pickle=False)
    loaded = load_artifact(path, [tmp_path], allow_pickle=True)
    assert loaded.model.predict(x[:5]).shape == (5,)


def test_onnx_loads_from_the_hashed_bytes(tmp_path):
    from skl2onnx import to_onnx

    x, y = small_xy()
    model = linear_model.LogisticRegression().fit(x, y)
    path = tmp_path / "m.onnx"
    path.write_bytes(to_onnx(model, x[:1].astype(np.float32)).SerializeToString())
    loaded = load_artifact(path, [tmp_path], allow_pickle=False)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    served = ServedModel(loaded.model, ["a", "b", "c", "d"], 1.0)
    rows = [dict(zip("abcd", row, strict=True)) for row in x[:50]]
    assert served.predict_many(rows) == model.predict(x[:50]).tolist()


# ------------------------------------------------------------------ smoke test
NUMBERS = {"a": "number", "b": "number"}


class Stub:
    def __init__(self, predict) -> None:
        self.predict = predict


def test_a_good_model_passes_the_smoke_test(real, adult_model):
    features = kinds(real["adult"].features)
    served = ServedModel(adult_model, list(features), 1.0)
    smoke_test(served, features, [0, 1])
    smoke_test(served, features, None)
    with pytest.raises(ArtifactError, match="not one of the declared labels"):
        smoke_test(served, features, ["0", "1"])  # the string "0" is not the int 0


@pytest.mark.parametrize(("predict", "message"), [
    (lambda rows: (_ for _ in ()).throw(RuntimeError("feature store down")),
     "raised RuntimeError: feature store down"),
    (lambda rows: np.zeros((len(rows), 2)), r"shape \(2, 2\)"),
    (lambda rows: np.zeros(len(rows) + 1), "3 predictions for 2 rows"),
    (lambda rows: [object() for _ in rows], "must be a string"),
    (lambda rows: [{"label": 1} for _ in rows], r"must be a string"),
    (lambda rows: [[1], [2, 3]], "not one prediction per row"),
    (lambda rows: np.full(len(rows), np.nan), "nan"),
    (lambda rows: np.full(len(rows), 7), "predicted 7, which is not one of the declared"),
    (lambda rows: np.array([True, False]), "predicted True, which is not one of the declared"),
    (lambda rows: np.array([1.0, 0.0]), "predicted 1.0, which is not one of the declared"),
])
def test_a_broken_model_fails_the_smoke_test(predict, message):
    served = ServedModel(Stub(predict), list(NUMBERS), 1.0)
    with pytest.raises(ArtifactError, match=message):
        smoke_test(served, NUMBERS, [0, 1])


def test_the_smoke_test_uses_the_schema_and_known_categories(real, adult_model):
    seen: list[pd.DataFrame] = []

    class Recording:  # holds the real pipeline, so its encoders' categories are visible
        def __init__(self) -> None:
            self.inner = adult_model
            self.feature_names_in_ = adult_model.feature_names_in_

        def predict(self, frame):
            seen.append(frame)
            return self.inner.predict(frame)

    features = kinds(real["adult"].features)
    smoke_test(ServedModel(Recording(), list(features), 1.0), features, [0, 1])
    smoke_test(ServedModel(Recording(), list(features), 1.0), features, None)
    seen.pop()
    assert len(seen) == 1 and len(seen[0]) == 2  # one call for both rows
    rows = seen[0].to_dict("records")
    assert rows[0]["age"] == 0.0 and rows[1]["age"] == 1.0 and rows[0]["workclass"] == ""
    assert rows[1]["workclass"] in set(real["adult"].features["workclass"].dropna())


def test_predictions_are_plain_python_scalars(adult_model, real):
    served = ServedModel(adult_model, list(real["adult"].features.columns), 1.0)
    out = served.predict_many(real["adult"].features.head(5).to_dict("records"))
    assert all(type(p) is int for p in out)
    assert served.predict_one(real["adult"].features.iloc[0].to_dict()) == out[0]


# ------------------------------------------------------------------ slow calls
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def timed_call(slow: SlowCalls, clock: FakeClock, seconds: float) -> str:
    def work() -> str:
        clock.now += seconds
        return "done"

    return slow.timed(work)


def make_slow(**options) -> tuple[SlowCalls, FakeClock]:
    clock = FakeClock()
    return SlowCalls(0.1, clock=clock, cpu_clock=lambda: 0.0, **options), clock


def test_one_slow_call_never_trips():
    slow, clock = make_slow(window=20, strikes=5, warmup=3)
    for index in range(200):
        timed_call(slow, clock, 5.0 if index % 10 == 5 else 0.01)  # 2 slow per window
    assert slow.stats()["slow"] == 20 and slow.stats()["calls"] == 200


def test_warm_up_calls_never_count():
    slow, clock = make_slow(window=20, strikes=2, warmup=3)
    for _ in range(3):
        timed_call(slow, clock, 9.0)
    timed_call(slow, clock, 0.2)  # first judged call, and slow: 1 strike
    timed_call(slow, clock, 0.01)
    assert slow.stats()["slow"] == 1
    slow.check()


def test_strikes_of_the_window_trip_the_next_call():
    slow, clock = make_slow(window=10, strikes=3, warmup=0)
    for seconds in (0.2, 0.01, 0.3, 0.01, 0.01):
        timed_call(slow, clock, seconds)
    assert timed_call(slow, clock, 0.25) == "done"  # the third strike still answers
    with pytest.raises(ModelTimeoutError,
                       match=r"3 of the last 6 calls over the 100 ms timeout \(median 105 ms"):
        timed_call(slow, clock, 0.01)
    with pytest.raises(ModelTimeoutError):
        slow.check()  # stays tripped until reset
    stats = slow.stats()
    assert stats["calls"] == 6 and stats["slow"] == 3 and stats["last_ms"] == pytest.approx(250)


def test_old_strikes_leave_the_window():
    slow, clock = make_slow(window=5, strikes=3, warmup=0)
    for seconds in (0.2, 0.2) + (0.01,) * 5 + (0.2,) + (0.01,) * 5 + (0.2, 0.2):
        timed_call(slow, clock, seconds)
    slow.check()  # 5 slow in all, never 3 within 5 calls


def test_reset_clears_and_restarts_the_warm_up():
    slow, clock = make_slow(window=4, strikes=2, warmup=1)
    for _ in range(3):
        timed_call(slow, clock, 1.0)
    with pytest.raises(ModelTimeoutError):
        slow.check()
    slow.reset()
    assert slow.stats() == {"calls": 0, "slow": 0, "median_ms": None, "median_cpu_ms": None,
                            "last_ms": None, "tripped": False}
    timed_call(slow, clock, 1.0)  # warm-up again
    timed_call(slow, clock, 1.0)
    slow.check()


def test_a_batch_counts_as_one_call():
    served = ServedModel(Stub(lambda rows: np.zeros(len(rows), dtype=int)), list(NUMBERS), 1.0)
    served.predict_many([{"a": 1.0, "b": 2.0}] * 50)
    served.predict_one({"a": 1.0, "b": 2.0})
    assert served.stats()["calls"] == 2 and served.stats()["slow"] == 0



# ------------------------------------------------------------------ ensemble shapes
def crafted_gradient_boosting() -> ensemble.GradientBoostingRegressor:
    """The reviewer's model: a (3, 300) tree grid where sklearn writes one column per row."""
    x, y = small_xy()
    model = ensemble.GradientBoostingRegressor(n_estimators=3, max_depth=2,
                                               random_state=0).fit(x, y.astype(float))
    trees = model.estimators_.ravel().tolist()
    grid = np.empty((3, 300), dtype=object)
    for i in range(grid.size):
        grid.flat[i] = trees[i % len(trees)]
    model.estimators_ = grid
    return model


def test_a_gradient_boosting_tree_grid_of_the_wrong_shape_is_refused(tmp_path):
    path = dump(crafted_gradient_boosting(), tmp_path, "gb.skops")
    with pytest.raises(ArtifactError, match=r"\(3, 300\) grid; expected \(3, 1\)"):
        load_artifact(path, [tmp_path], allow_pickle=False)


def test_ensemble_checks_accept_real_models_and_refuse_mismatched_trees():
    x, y = small_xy()
    y3 = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)
    fitted = [ensemble.GradientBoostingClassifier(n_estimators=3).fit(x, y3),
              ensemble.GradientBoostingClassifier(n_estimators=3, init="zero").fit(x, y),
              ensemble.HistGradientBoostingClassifier(max_iter=3).fit(x, y3),
              ensemble.RandomForestRegressor(n_estimators=3).fit(x, x[:, :2])]
    for model in fitted:
        check_indices(model)
    gb, _, hist, forest = fitted
    wide = tree.DecisionTreeRegressor().fit(np.hstack([x, x]), y)  # 8 features, not 4
    gb.estimators_[1, 2] = wide
    with pytest.raises(ArtifactError, match="a tree takes 8 features"):
        check_indices(gb)
    forest.estimators_[0] = tree.DecisionTreeRegressor().fit(x, y)  # 1 output, not 2
    with pytest.raises(ArtifactError, match="gives 1 outputs"):
        check_indices(forest)
    hist._predictors[0] = hist._predictors[0][:2]
    with pytest.raises(ArtifactError, match="not 3 per iteration"):
        check_indices(hist)
    gb3 = ensemble.GradientBoostingClassifier(n_estimators=3).fit(x, y3)
    gb3.init_ = linear_model.LogisticRegression().fit(x, y)  # 2 classes for 3 columns
    with pytest.raises(ArtifactError, match="initial estimator"):
        check_indices(gb3)


# ------------------------------------------------------------------ checking in a child
CRASHING = textwrap.dedent("""
    import os, signal, time

    class Crash:
        def predict(self, rows):
            os.kill(os.getpid(), signal.SIGSEGV)

    class Hang:
        def predict(self, rows):
            time.sleep(600)

    class Seven:
        def predict(self, rows):
            return [7 for _ in rows]
""")


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    """A module of hostile models importable here (to pickle) and in the child (to load)."""
    (tmp_path / "hostile_models.py").write_text(CRASHING)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]))
    import hostile_models

    yield hostile_models
    sys.modules.pop("hostile_models", None)


def child_check(path: Path, folder: Path, **options) -> None:
    check_in_subprocess(path, [folder], allow_pickle=True, features=NUMBERS, labels=[0, 1],
                        **options)


def test_the_child_check_passes_a_good_model_and_relays_refusals(tmp_path, hostile):
    x, y = small_xy()
    good = linear_model.LogisticRegression().fit(x[:, :2], y)
    child_check(dump(good, tmp_path, "good.skops"), tmp_path)
    with pytest.raises(ArtifactError, match=r"\(3, 300\) grid"):
        child_check(dump(crafted_gradient_boosting(), tmp_path, "gb.skops"), tmp_path)
    path = tmp_path / "seven.pkl"
    path.write_bytes(pickle.dumps(hostile.Seven()))
    with pytest.raises(ArtifactError, match="smoke test failed: the model predicted 7"):
        child_check(path, tmp_path)


def test_a_model_that_crashes_its_process_is_refused(tmp_path, hostile):
    path = tmp_path / "crash.pkl"
    path.write_bytes(pickle.dumps(hostile.Crash()))
    with pytest.raises(ArtifactError, match=r"crashed the checking process \(signal 11\)"):
        child_check(path, tmp_path)


def test_a_model_that_hangs_is_refused_after_the_timeout(tmp_path, hostile):
    path = tmp_path / "hang.pkl"
    path.write_bytes(pickle.dumps(hostile.Hang()))
    with pytest.raises(ArtifactError, match="took over 5 s"):
        child_check(path, tmp_path, timeout_seconds=5)


# ------------------------------------------------------------------ ONNX external data
def test_onnx_tensors_in_external_files_are_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    secret = tmp_path / "outside" / "secret.bin"
    secret.parent.mkdir()
    secret.write_bytes(np.ones(4, np.float32).tobytes())
    weights = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
    weights.data_location = TensorProto.EXTERNAL
    for key, value in {"location": str(secret), "offset": "0", "length": "16"}.items():
        weights.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folder = tmp_path / "models"
    folder.mkdir()
    path = folder / "external.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ArtifactError, match=r"external data \('.*secret.bin'\)"):
        load_artifact(path, [folder], allow_pickle=False)

    # The same tensor hidden in a Constant node inside an If branch is found too.
    inner = helper.make_graph([helper.make_node("Constant", [], ["c"], value=weights)],
                              "then", [], [helper.make_tensor_value_info(
                                  "c", TensorProto.FLOAT, [4])])
    node = helper.make_node("If", ["cond"], ["out"], then_branch=inner, else_branch=inner)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4])])
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(ArtifactError, match="external data"):
        load_artifact(path, [folder], allow_pickle=False)
    assert weights.data_location == onnx.TensorProto.EXTERNAL


# ------------------------------------------------------------------ zip bomb
def test_a_skops_zip_bomb_is_refused_before_it_inflates(tmp_path):
    x, y = small_xy()
    path = dump(linear_model.LogisticRegression().fit(x, y), tmp_path, "bomb.skops")
    assert load_artifact(path, [tmp_path], allow_pickle=False)
    chunk = b"\0" * (1 << 20)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive, \
            archive.open("padding", "w", force_zip64=True) as padding:
        for _ in range(200):
            padding.write(chunk)
    assert path.stat().st_size < 2 << 20
    with pytest.raises(ArtifactError, match=r"inflates to 209,7\d\d,\d\d\d bytes .*zip bomb"):
        load_artifact(path, [tmp_path], allow_pickle=False)


# ------------------------------------------------------------------ health
def test_healthy_tells_a_working_model_from_a_broken_one(real, adult_model):
    features = kinds(real["adult"].features)
    assert ServedModel(adult_model, features, 1.0).healthy()
    calls: list[int] = []

    def flaky(rows):
        calls.append(len(rows))
        if len(calls) > 1:
            raise RuntimeError("broken for good")
        return np.zeros(len(rows), dtype=int)

    served = ServedModel(Stub(flaky), list(NUMBERS), 1.0)
    assert served.healthy()
    assert not served.healthy()  # raises: unhealthy, and healthy() itself does not raise
    assert calls == [2, 2]
    assert not ServedModel(Stub(lambda rows: np.zeros((2, 2))), NUMBERS, 1.0).healthy()
    assert not ServedModel(Stub(lambda rows: [object()] * 2), NUMBERS, 1.0).healthy()


def test_calls_that_fail_slowly_are_slow_calls_too():
    """A model that waits on a feature store and then raises: each failure counts its time."""
    slow, clock = make_slow(window=10, strikes=3, warmup=0)

    def times_out() -> str:
        clock.now += 0.5
        raise TimeoutError("feature store did not answer")

    for _ in range(3):
        with pytest.raises(TimeoutError):
            slow.timed(times_out)
    with pytest.raises(ModelTimeoutError, match="3 of the last 3 calls"):
        timed_call(slow, clock, 0.01)


# ------------------------------------------------------------------ ONNX named inputs, nulls
def mixed(tmp_path, *, impute: bool = True):
    """skl2onnx's export of a pipeline over age, income (float), visits (int64), plan
    (string), loaded; and the fitted pipeline."""
    from tests.service.models import mixed_onnx, mixed_pipeline, mixed_rows

    frame, labels = mixed_rows(600, nulls=0.1 if impute else 0.0)
    pipeline = mixed_pipeline(impute).fit(frame, labels)
    path = tmp_path / "mixed.onnx"
    path.write_bytes(mixed_onnx(pipeline, frame))
    return load_artifact(path, [tmp_path], allow_pickle=False).model, pipeline


def test_onnx_inputs_are_fed_by_name_whatever_their_order(tmp_path):
    from tests.service.models import MIXED, mixed_rows

    model, pipeline = mixed(tmp_path)
    declared = {"plan": "string", "note": "string", "visits": "number", "age": "number",
                "income": "number"}
    assert [i.name for i in model.inputs] == ["age", "income", "visits", "plan"]
    served = ServedModel(model, declared, 1.0)
    assert served.ignored == ["note"] and served.integers == {"visits": (-2**63, 2**63 - 1)}
    frame, _ = mixed_rows(200, seed=3)
    rows = [{**r, "visits": int(r["visits"]), "note": "x"} for r in frame.to_dict("records")]
    margin = np.abs(pipeline.predict_proba(frame)[:, 1] - 0.5) > 1e-3
    got = np.array(served.predict_many(rows), dtype=object)
    assert (got[margin] == pipeline.predict(frame)[margin]).all()
    smoke_test(served, declared, ["no", "yes"])
    smoke_test(ServedModel(model, MIXED, 1.0), MIXED, ["no", "yes"])


@pytest.mark.parametrize(("change", "message"), [
    ({"plan": "number"}, re.escape("input 'plan' takes strings (tensor(string)) but the "
                                   "deployment declares feature plan as a number")),
    ({"age": "string"}, re.escape("input 'age' takes numbers (tensor(float)) but the "
                                  "deployment declares feature age as a string")),
    ({"plan": None}, r"needs input\(s\) \['plan'\] that the deployment does not declare"),
    ({"visits": "number?"}, r"feature visits is nullable but the ONNX model's input 'visits' "
                            r"is a tensor\(int64\), which cannot hold a null"),
])
def test_onnx_inputs_the_declarations_do_not_fit_are_refused_by_name(tmp_path, change,
                                                                       message):
    from tests.service.models import MIXED

    model, _ = mixed(tmp_path)
    declared = {k: v for k, v in {**MIXED, **change}.items() if v is not None}
    with pytest.raises(ArtifactError, match=message):
        ServedModel(model, declared, 1.0)


def test_the_one_float_tensor_form_takes_numbers_only_and_its_width(tmp_path):
    from skl2onnx import to_onnx

    x, y = small_xy()
    path = tmp_path / "m.onnx"
    path.write_bytes(to_onnx(linear_model.LogisticRegression().fit(x, y),
                             x[:1].astype(np.float32)).SerializeToString())
    model = load_artifact(path, [tmp_path], allow_pickle=False).model
    with pytest.raises(ArtifactError, match=r"one tensor of numbers \('X'\), which cannot "
                                            r"hold the string feature\(s\) \['d'\]"):
        ServedModel(model, {"a": "number", "b": "number", "c": "number", "d": "string"}, 1.0)
    with pytest.raises(ArtifactError, match="takes 4 columns but the deployment declares 3"):
        ServedModel(model, ["a", "b", "c"], 1.0)
    nullable = {"a": "number?", "b": "number", "c": "number", "d": "number"}
    with pytest.raises(ArtifactError, match=r"feature a is nullable .* output\(s\) "
                                            r"\['output_probability'\] hold NaN"):  # a ZipMap
        smoke_test(ServedModel(model, nullable, 1.0), nullable, [0, 1])


def test_strings_an_onnx_model_holds_must_be_text(tmp_path):
    from skl2onnx import to_onnx

    x, _ = small_xy()
    labels = np.where(x[:, 0] > 0, "yes", "no")
    proto = to_onnx(linear_model.LogisticRegression().fit(x, labels), x[:1].astype(np.float32))
    node = next(n for n in proto.graph.node if n.op_type == "LinearClassifier")
    classes = next(a for a in node.attribute if a.name == "classlabels_strings")
    path = tmp_path / "m.onnx"
    for bad, message in ((b"y\x00es", "a NUL character"), (b"\xff\xfe", "not UTF-8")):
        classes.strings[1] = bad
        path.write_bytes(proto.SerializeToString())
        with pytest.raises(ArtifactError, match=f"node 'LinearClassifier'.* holds a string .*"
                                                f"{message}"):
            load_artifact(path, [tmp_path], allow_pickle=False)


def test_nulls_reach_scikit_learn_as_nan_or_its_imputers_missing_value(tmp_path):
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300), "plan": rng.choice(["a", "b"], 300)})
    frame.loc[::7, "plan"] = np.nan
    labels = ((frame.x > 0) ^ (frame.plan == "a")).astype(int)
    for missing, null in ((np.nan, np.nan), ("", "")):
        data = frame.fillna({"plan": ""}) if missing == "" else frame
        model = pipeline.make_pipeline(ColumnTransformer([
            ("n", SimpleImputer(), ["x"]),
            ("s", pipeline.make_pipeline(
                SimpleImputer(missing_values=missing, strategy="most_frequent"),
                OneHotEncoder(handle_unknown="ignore")), ["plan"])]),
            linear_model.LogisticRegression())
        model.fit(data, labels)
        declared = {"x": "number?", "plan": "string?"}
        served = ServedModel(model, declared, 1.0)
        smoke_test(served, declared, [0, 1])
        rows = [{"x": 0.3, "plan": None}, {"x": None, "plan": "b"}, {"x": None, "plan": None}]
        expected = pd.DataFrame({"x": [0.3, np.nan, np.nan], "plan": [null, "b", null]})
        assert served.predict_many(rows) == model.predict(expected).tolist()


def test_a_model_that_cannot_take_a_null_is_refused_even_where_finiteness_is_assumed():
    """Service workers run scikit-learn with assume_finite=True (its NaN check skipped, so a
    bare LogisticRegression would answer a NaN with a class); the null check turns it on."""
    import sklearn

    x, y = small_xy()
    frame = pd.DataFrame(x, columns=list("abcd"))
    declared = {"a": "number", "b": "number", "c": "number?", "d": "number"}
    bare = linear_model.LogisticRegression().fit(frame, y)
    native = ensemble.HistGradientBoostingClassifier(max_iter=10).fit(frame, y)
    with sklearn.config_context(assume_finite=True):
        assert ServedModel(bare, declared, 1.0).predict_many(
            [{"a": 0.0, "b": 0.0, "c": None, "d": 0.0}]) in ([0], [1])  # no error: silent
        with pytest.raises(ArtifactError, match=r"feature c is nullable \('number\?'\) but the "
                                                "model fails on a null c: the model raised "
                                                "ValueError: Input X contains NaN"):
            smoke_test(ServedModel(bare, declared, 1.0), declared, [0, 1])
        smoke_test(ServedModel(native, declared, 1.0), declared, [0, 1])  # NaN-aware trees
        smoke_test(ServedModel(bare, {**declared, "c": "number"}, 1.0), declared | {
            "c": "number"}, [0, 1])
