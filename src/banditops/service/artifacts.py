"""Model artifacts: where they may come from, what they may contain, how a request reaches them.

Formats: ``.skops`` (scikit-learn), ``.onnx`` (onnxruntime), and ``.joblib``/``.pkl`` only
when the config sets ``allow_pickle`` (unpickling runs code by design). Artifacts load only
from the configured ``artifact_dirs``, after symlinks are resolved. The file is read once;
its sha256 is computed on those bytes and the model is built from the same bytes, so the
file cannot be swapped between the check and the load. A registered artifact's sha256 is
recorded, and every later load (restart, another replica) must find the same digest.

What a ``.skops`` file may hold. A skops file is a JSON tree of nodes, each naming a type
(``module.Class``) and a loader that says how it is built. We refuse the file unless:

- every node's type is in :data:`SKOPS_TYPES`, an allow-list of exact names (no prefixes):
  the estimators and transformers :mod:`banditops.simulation.models` builds, common
  scikit-learn classifiers, regressors, encoders, scalers and pipelines, the internal
  objects they hold (losses, links, tree storage, bin mappers, optimizers), and the
  numpy containers, scalars, dtypes and random generators they need. Every name was taken
  from real dumps (``skops.io.dumps`` then the schema), not guessed;
- every node's loader is in :data:`SKOPS_LOADERS`. Loaders that return or call something
  named by the file (``FunctionNode``, ``PartialNode``, ``MethodNode``, ``OperatorFuncNode``,
  ``ConstructorFromReduceNode``: ``builtins.exec(...)``, ``os.system(...)``,
  ``numpy.load(..., allow_pickle=True)``) are never accepted, whatever the type. So
  ``FunctionTransformer``, ``SelectKBest`` (holds a score function), ``SplineTransformer``
  and ``TunedThresholdClassifierCV`` (hold functions) are refused;
- skops' own audit (``get_untrusted_types``) finds nothing outside the allow-list either.

The error names the offending types. ``extra_trusted`` (config) adds exact names, never
prefixes, and never makes a code-running loader acceptable.

Trusting a type is not trusting its content: scikit-learn's tree storage, the
HistGradientBoosting predictors, KD/ball trees and libsvm models hold raw indices that
compiled code follows without bounds checks (skops does not trust them by default for that
reason). After loading, :func:`check_indices` verifies those indices (children after their
parent and inside the array, features inside the fitted width), so a crafted file is
refused instead of reading out of bounds at the first prediction. Ensembles are checked
for the shapes compiled code trusts too (GradientBoosting's tree grid, each member tree's
width and outputs, HistGradientBoosting's predictors per iteration).

Before skops reads a file, its inflated size is bounded (:func:`check_zip_size`); an ONNX
model is parsed with ``onnx`` first and refused if any tensor lives in external data or a
string it holds is not text (:func:`check_onnx_tensors`), then its inputs must be tensors of
a served type (:class:`OnnxModel`) that the declared features can feed by name
(:meth:`OnnxModel.bind`). For what no check foresees, :func:`check_in_subprocess` loads
and smoke-tests an artifact in a child process, so a crash or hang there refuses the version.

A loaded model is wrapped in a :class:`ServedModel`, which turns validated feature mappings
into what the model takes (one frame with the fitted column names, one array per ONNX input,
or a float array in the declared feature order; a null as the model expects it, see
:mod:`banditops.service.features`), calls the model once per batch, converts outputs to plain Python
scalars, and judges its speed with :class:`SlowCalls`.

:func:`smoke_test` runs at registration: two synthetic rows built from the deployment's
feature schema must give exactly one JSON-safe scalar each (and a declared label, when
labels are declared), or the version is refused before it serves anyone; and rows with a
null in each nullable feature must too (:func:`check_nullable`, also run at every load).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import statistics
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from banditops.errors import ArtifactError, ModelTimeoutError
from banditops.service.features import base, base_kinds, nullable_features

FORMATS = {".skops": "skops", ".onnx": "onnx", ".joblib": "pickle", ".pkl": "pickle",
           ".pickle": "pickle"}

# Exact type names a .skops artifact may hold (see the module docstring for how they
# were derived; tests/test_artifacts.py loads each family through load_artifact).
SKOPS_TYPES: frozenset[str] = frozenset({
    # plain containers and values
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.set", "builtins.slice",
    "builtins.str", "builtins.int", "builtins.float", "builtins.bool", "builtins.object",
    # numpy: arrays, scalars, dtypes, random generators
    "numpy.ndarray", "numpy.dtype", "numpy.bool", "numpy.bool_", "numpy.int8", "numpy.int16",
    "numpy.int32", "numpy.int64", "numpy.uint8", "numpy.uint16", "numpy.uint32",
    "numpy.uint64", "numpy.float32", "numpy.float64", "numpy.str_",
    "numpy.random.mtrand.RandomState", "numpy.random._generator.Generator",
    # linear models
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._base.LinearRegression",
    "sklearn.linear_model._ridge.Ridge", "sklearn.linear_model._ridge.RidgeClassifier",
    "sklearn.linear_model._coordinate_descent.Lasso",
    "sklearn.linear_model._coordinate_descent.ElasticNet",
    "sklearn.linear_model._huber.HuberRegressor",
    "sklearn.linear_model._perceptron.Perceptron",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.linear_model._stochastic_gradient.SGDRegressor",
    "sklearn.linear_model._sgd_fast.Hinge", "sklearn.linear_model._sgd_fast.ModifiedHuber",
    # trees and forests
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._classes.ExtraTreeClassifier", "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.ensemble._forest.ExtraTreesRegressor",
    "sklearn.ensemble._bagging.BaggingClassifier",
    "sklearn.ensemble._weight_boosting.AdaBoostClassifier",
    "sklearn.ensemble._voting.VotingClassifier",
    "sklearn.ensemble._stacking.StackingClassifier",
    "sklearn.utils._bunch.Bunch",
    # gradient boosting (both kinds) and what they hold
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.dummy.DummyClassifier", "sklearn.dummy.DummyRegressor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.link.Interval", "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogitLink", "sklearn._loss.link.HalfLogitLink",
    "sklearn._loss.link.LogLink", "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfBinomialLoss", "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError", "sklearn._loss.loss.AbsoluteError",
    "sklearn._loss.loss.HalfPoissonLoss", "sklearn._loss.loss.PinballLoss",
    "sklearn._loss.loss.HuberLoss", "sklearn._loss.loss.ExponentialLoss",
    "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError", "sklearn._loss._loss.CyAbsoluteError",
    "sklearn._loss._loss.CyHalfPoissonLoss", "sklearn._loss._loss.CyPinballLoss",
    "sklearn._loss._loss.CyHuberLoss", "sklearn._loss._loss.CyExponentialLoss",
    # naive Bayes, SVMs, neighbours, neural networks, calibration, thresholds
    "sklearn.naive_bayes.GaussianNB", "sklearn.naive_bayes.BernoulliNB",
    "sklearn.naive_bayes.MultinomialNB", "sklearn.naive_bayes.ComplementNB",
    "sklearn.naive_bayes.CategoricalNB",
    "sklearn.svm._classes.SVC", "sklearn.svm._classes.NuSVC", "sklearn.svm._classes.SVR",
    "sklearn.svm._classes.LinearSVC", "sklearn.svm._classes.LinearSVR",
    "sklearn.neighbors._classification.KNeighborsClassifier",
    "sklearn.neighbors._regression.KNeighborsRegressor",
    "sklearn.neighbors._kd_tree.KDTree", "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._multilayer_perceptron.MLPRegressor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.calibration.CalibratedClassifierCV", "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.model_selection._classification_threshold.FixedThresholdClassifier",
    # pipelines, column handling, preprocessing
    "sklearn.pipeline.Pipeline", "sklearn.pipeline.FeatureUnion",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.compose._column_transformer.make_column_selector",
    "sklearn.impute._base.SimpleImputer", "sklearn.impute._base.MissingIndicator",
    "sklearn.impute._knn.KNNImputer",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._target_encoder.TargetEncoder",
    "sklearn.preprocessing._label.LabelEncoder", "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.preprocessing._data.StandardScaler", "sklearn.preprocessing._data.MinMaxScaler",
    "sklearn.preprocessing._data.MaxAbsScaler", "sklearn.preprocessing._data.RobustScaler",
    "sklearn.preprocessing._data.Normalizer", "sklearn.preprocessing._data.QuantileTransformer",
    "sklearn.preprocessing._data.PowerTransformer",
    "sklearn.preprocessing._discretization.KBinsDiscretizer",
    "sklearn.preprocessing._polynomial.PolynomialFeatures",
    "sklearn.decomposition._pca.PCA", "sklearn.decomposition._truncated_svd.TruncatedSVD",
    "sklearn.feature_selection._variance_threshold.VarianceThreshold",
})

# How a node may be built: data nodes, attribute-restoring nodes, and the tree/loss nodes
# that call an allow-listed class. Absent on purpose: FunctionNode, PartialNode, MethodNode,
# OperatorFuncNode, ConstructorFromReduceNode, DefaultDictNode (each returns or calls
# something the file names), BytesNode/SparseMatrixNode (no supported model needs them).
SKOPS_LOADERS: frozenset[str] = frozenset({
    "DictNode", "ListNode", "TupleNode", "SetNode", "SliceNode", "JsonNode", "TypeNode",
    "NdArrayNode", "DTypeNode", "RandomStateNode", "RandomGeneratorNode", "ObjectNode",
    "TreeNode", "LossNode", "CachedNode",
})
_TYPE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


@dataclass(frozen=True)
class LoadedArtifact:
    """A model built from an artifact's bytes, with the digest of exactly those bytes."""

    model: Any
    sha256: str
    path: Path


def check_path(artifact: str | Path, allowed: list[Path]) -> Path:
    """The resolved path, if it lies inside one of the allowed folders."""
    path = Path(artifact).resolve()
    if not any(path.is_relative_to(folder.resolve()) for folder in allowed):
        raise ArtifactError(
            f"artifact {artifact} is outside the configured artifact_dirs "
            f"({', '.join(str(f) for f in allowed) or 'none configured'})")
    if not path.is_file():
        raise ArtifactError(f"artifact {artifact} not found")
    return path


def load_artifact(artifact: str | Path, allowed: list[Path], *, allow_pickle: bool,
                  expected_sha256: str | None = None,
                  extra_trusted: tuple[str, ...] | list[str] = ()) -> LoadedArtifact:
    """Check the path, read the bytes once, check the digest, build the model from them."""
    path = check_path(artifact, allowed)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ArtifactError(f"artifact {path.name}: unknown format {path.suffix!r}; use .skops "
                            "or .onnx (or .joblib/.pkl with allow_pickle)")
    if kind == "pickle" and not allow_pickle:
        raise ArtifactError(f"artifact {path.name}: pickle/joblib artifacts can run code "
                            "when loaded; set allow_pickle = true in the config to accept "
                            "them")
    extra = _exact_names(extra_trusted)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ArtifactError(f"artifact {path.name} cannot be read: {error}") from None
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise ArtifactError(f"artifact {path} changed since it was registered: sha256 "
                            f"{digest} expected {expected_sha256}")
    try:
        if kind == "skops":
            model = load_skops(data, extra, name=path.name)
        elif kind == "onnx":
            model = OnnxModel(data)
        else:
            import joblib

            model = joblib.load(io.BytesIO(data))
    except ArtifactError:
        raise
    except Exception as error:  # a corrupt or foreign file: say so, don't crash
        raise ArtifactError(f"artifact {path.name} does not load: {type(error).__name__}: "
                            f"{error}") from None
    return LoadedArtifact(model, digest, path)


def _exact_names(names: tuple[str, ...] | list[str]) -> frozenset[str]:
    bad = [n for n in names if not isinstance(n, str) or not _TYPE_NAME.fullmatch(n)]
    if bad:
        raise ArtifactError(f"extra trusted types must be exact names like "
                            f"'package.module.Class' (no prefixes or patterns): {bad}")
    return frozenset(names)


def skops_nodes(data: bytes) -> set[tuple[str, str]]:
    """Every (type name, loader) pair in a skops file's schema, read without building anything."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
    found: set[tuple[str, str]] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            loader = node.get("__loader__")
            if isinstance(loader, str):
                found.add((f"{node.get('__module__')}.{node.get('__class__')}", loader))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


GiB = 1 << 30
MiB = 1 << 20


def check_zip_size(data: bytes, *, name: str = "artifact") -> None:
    """Refuse a zip that would inflate far beyond its size (a zip bomb) before reading it.

    The limit is min(1 GiB, max(64 MiB, 50 x the file size)): real models compress a few
    times at most, and every load would otherwise pay the inflated size in memory.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ArtifactError(f"artifact {name} is not a valid skops (zip) file: "
                            f"{error}") from None
    limit = min(GiB, max(64 * MiB, 50 * len(data)))
    if inflated > limit:
        raise ArtifactError(f"artifact {name} inflates to {inflated:,} bytes from "
                            f"{len(data):,} (limit {limit:,}): refused as a zip bomb")


def load_skops(data: bytes, extra_trusted: frozenset[str] = frozenset(), *,
               name: str = "artifact") -> Any:
    """Build a skops model if every type is allow-listed and every loader is data-only."""
    from skops.io import get_untrusted_types, loads

    trusted = SKOPS_TYPES | extra_trusted
    check_zip_size(data, name=name)
    nodes = skops_nodes(data)
    refused = {f"{t} (loaded by {loader}, which returns or calls what the file names)"
               for t, loader in nodes if loader not in SKOPS_LOADERS}
    refused |= {t for t, loader in nodes if loader in SKOPS_LOADERS and t not in trusted}
    untrusted = get_untrusted_types(data=data)
    refused |= {t for t in untrusted if t not in trusted}
    if refused:
        raise ArtifactError(f"artifact {name} holds types that are not trusted: "
                            f"{sorted(refused)}")
    model = loads(data, trusted=untrusted)
    check_indices(model)
    return model


# ------------------------------------------------------------------ content checks
def check_indices(model: Any) -> None:
    """Refuse index arrays that compiled prediction code would follow out of bounds."""
    from sklearn.neighbors import BallTree, KDTree
    from sklearn.svm._base import BaseLibSVM
    from sklearn.tree._tree import Tree

    for obj in _reachable(model):
        attrs = vars(obj) if hasattr(obj, "__dict__") else {}
        width = attrs.get("n_features_in_")
        what = type(obj).__name__
        if isinstance(attrs.get("tree_"), Tree):
            tree = attrs["tree_"]
            leaf = tree.children_left == -1
            _check_tree(what, tree.children_left, tree.children_right, leaf,
                        tree.feature, width)
            if not np.array_equal(leaf, tree.children_right == -1):
                raise ArtifactError(f"{what}: a tree node has only one child")
        if attrs.get("_predictors") is not None:
            _check_predictors(what, attrs["_predictors"], width, attrs.get("_bin_mapper"))
        if isinstance(attrs.get("_tree"), KDTree | BallTree):
            _check_neighbors(what, attrs["_tree"], width)
        if isinstance(obj, BaseLibSVM):
            _check_libsvm(what, obj, attrs)
        _check_ensemble(what, obj, attrs, width)


def _reachable(root: Any, limit: int = 2_000_000) -> Iterator[Any]:
    """Objects reachable from root through attributes, containers and object arrays."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, str | bytes | int | float | bool | type(None)):
            continue
        seen.add(id(obj))
        if len(seen) > limit:
            raise ArtifactError("the model holds too many objects to check")
        yield obj
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set):
            stack.extend(obj)
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend(obj.ravel().tolist())
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())


def _check_tree(what: str, left: np.ndarray, right: np.ndarray, leaf: np.ndarray,
                feature: np.ndarray, width: Any) -> None:
    n = len(left)
    node = np.arange(n)
    inner = ~leaf
    if n == 0 or len(right) != n or len(feature) != n:
        raise ArtifactError(f"{what}: a tree has an empty or inconsistent node array")
    for child in (left, right):
        if np.any((child[inner] <= node[inner]) | (child[inner] >= n)):
            raise ArtifactError(f"{what}: a tree node points outside its tree")
    if not isinstance(width, int | np.integer):
        raise ArtifactError(f"{what}: a tree without a fitted feature count")
    if np.any((feature[inner] < 0) | (feature[inner] >= width)):
        raise ArtifactError(f"{what}: a tree node splits on a feature the model does not have")


def _expected_trees_per_iteration(what: str, obj: Any, attrs: Mapping[str, Any]) -> int:
    """1 for regressors and binary classifiers, the class count otherwise (from ``classes_``)."""
    from sklearn.base import is_classifier

    if not is_classifier(obj):
        return 1
    classes = attrs.get("classes_")
    n_classes = len(classes) if classes is not None else 0
    if n_classes < 2 or attrs.get("n_classes_", n_classes) != n_classes:
        raise ArtifactError(f"{what}: its class count and classes disagree")
    return 1 if n_classes == 2 else n_classes


def _check_ensemble(what: str, obj: Any, attrs: Mapping[str, Any], width: Any) -> None:
    """Ensemble shapes that compiled code trusts: the tree grid, each tree's width.

    GradientBoosting's ``predict_stages`` writes tree k's output into column k of a buffer
    with one column per tree of an iteration and checks nothing: a (3, 300) tree grid for a
    regressor writes 299 columns past the end. Only the first tree's feature count is checked
    against the input, so every tree must have the model's width.
    """
    from sklearn.ensemble import BaseEnsemble
    from sklearn.ensemble._forest import BaseForest
    from sklearn.ensemble._gb import BaseGradientBoosting
    from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import (
        BaseHistGradientBoosting,
    )
    from sklearn.tree import BaseDecisionTree, DecisionTreeRegressor

    if not isinstance(obj, BaseEnsemble | BaseHistGradientBoosting):
        return
    if isinstance(obj, BaseGradientBoosting) and attrs.get("estimators_") is not None:
        k = _expected_trees_per_iteration(what, obj, attrs)
        grid = attrs["estimators_"]
        if (not isinstance(grid, np.ndarray) or grid.dtype != object or grid.ndim != 2
                or grid.shape != (attrs.get("n_estimators_"), k) or grid.shape[0] < 1
                or attrs.get("n_trees_per_iteration_", k) != k):
            shape = getattr(grid, "shape", type(grid).__name__)
            raise ArtifactError(f"{what}: its trees form a {shape} grid; expected "
                                f"({attrs.get('n_estimators_')}, {k})")
        _check_members(what, grid.ravel().tolist(), DecisionTreeRegressor, width, 1)
        try:  # the init estimator fills the buffer the trees add to: same width
            init = obj._raw_predict_init(np.zeros((1, width)))
        except Exception as error:
            raise ArtifactError(f"{what}: its initial estimator does not predict: "
                                f"{type(error).__name__}: {error}") from None
        if np.shape(init) != (1, k):
            raise ArtifactError(f"{what}: its initial estimator gives {np.shape(init)} "
                                f"values per row; expected (1, {k})")
    elif isinstance(obj, BaseForest) and attrs.get("estimators_") is not None:
        trees = attrs["estimators_"]
        if not isinstance(trees, list) or not trees:
            raise ArtifactError(f"{what}: its trees are not a non-empty list")
        _check_members(what, trees, BaseDecisionTree, width, attrs.get("n_outputs_"))
    elif isinstance(obj, BaseHistGradientBoosting) and attrs.get("_predictors") is not None:
        k = _expected_trees_per_iteration(what, obj, attrs)
        predictors = attrs["_predictors"]
        if (attrs.get("n_trees_per_iteration_") != k or not isinstance(predictors, list)
                or any(not isinstance(row, list) or len(row) != k for row in predictors)):
            raise ArtifactError(f"{what}: its predictors are not {k} per iteration")
        baseline = attrs.get("_baseline_prediction")
        if np.shape(baseline) != (1, k):
            raise ArtifactError(f"{what}: its baseline prediction has shape "
                                f"{np.shape(baseline)}; expected (1, {k})")


def _check_members(what: str, trees: list[Any], kind: type, width: Any,
                   outputs: Any) -> None:
    for tree in trees:
        if not isinstance(tree, kind):
            raise ArtifactError(f"{what}: holds a {type(tree).__name__} where a "
                                f"{kind.__name__} belongs")
        tree_width = getattr(tree, "n_features_in_", None)
        if (tree_width != width or getattr(tree.tree_, "n_features", None) != width
                or getattr(tree, "n_outputs_", None) != outputs
                or tree.tree_.n_outputs != outputs):
            raise ArtifactError(f"{what}: a tree takes {tree_width} features and gives "
                                f"{getattr(tree, 'n_outputs_', None)} outputs; the model "
                                f"takes {width} and gives {outputs}")


def _check_predictors(what: str, predictors: Any, width: Any, bin_mapper: Any) -> None:
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    categorical = getattr(bin_mapper, "is_categorical_", None)
    for predictor in (p for row in predictors for p in row):
        if not isinstance(predictor, TreePredictor):
            raise ArtifactError(f"{what}: holds a {type(predictor).__name__} as a tree")
        nodes = predictor.nodes
        leaf = nodes["is_leaf"].astype(bool)
        _check_tree(what, nodes["left"].astype(np.int64), nodes["right"].astype(np.int64),
                    leaf, nodes["feature_idx"].astype(np.int64), width)
        split = nodes[~leaf & nodes["is_categorical"].astype(bool)]
        if len(split) == 0:
            continue
        if (categorical is None or len(categorical) != width
                or not np.all(np.asarray(categorical)[split["feature_idx"]])
                or np.any(split["bitset_idx"] >= len(predictor.raw_left_cat_bitsets))):
            raise ArtifactError(f"{what}: a categorical split points outside its tables")


def _check_neighbors(what: str, tree: Any, width: Any) -> None:
    data, order, nodes, bounds = tree.get_arrays()
    n = len(data)
    start, end = nodes["idx_start"], nodes["idx_end"]
    inner = np.flatnonzero(nodes["is_leaf"] == 0)
    if (len(order) != n or np.any((order < 0) | (order >= n))
            or np.any((start < 0) | (start > end) | (end > n))
            or np.any(2 * inner + 2 >= len(nodes))
            or bounds.shape[1:] != (len(nodes), data.shape[1])
            or data.shape[1] != width):
        raise ArtifactError(f"{what}: its neighbour index points outside its data")


def _check_libsvm(what: str, model: Any, attrs: Mapping[str, Any]) -> None:
    vectors = attrs.get("support_vectors_")
    dual = attrs.get("_dual_coef_", attrs.get("dual_coef_"))
    if vectors is None or attrs.get("_n_support") is None or dual is None:
        return  # not fitted: sklearn refuses to predict
    rows = int(np.sum(model.n_support_))  # per class; regressors store it twice
    columns = getattr(dual, "shape", (0, 0))[1]
    if (getattr(vectors, "shape", (0, 0))[0] != rows or columns != rows
            or len(attrs.get("support_", ())) != rows):
        raise ArtifactError(f"{what}: its support vectors and coefficients disagree")


# ------------------------------------------------------------------ ONNX
def check_onnx_tensors(data: bytes) -> None:
    """Refuse an ONNX model whose tensors live in external files, or whose strings are not
    text.

    onnxruntime resolves an external tensor's ``location`` against the working directory
    when the model comes as bytes, so such a model reads files outside the artifact_dirs
    (the service's config, say). Served models must be self-contained. Every string the
    model holds (string tensors, string attributes such as class labels and categories)
    must be UTF-8 without NUL: a label is logged and answered as JSON. (onnxruntime itself
    refuses a tensor whose data does not fill its shape.)
    """
    import onnx

    try:
        proto = onnx.load_model_from_string(data)  # never follows external data
    except Exception as error:
        raise ArtifactError(f"the ONNX model does not parse: {type(error).__name__}: "
                            f"{error}") from None
    graphs: list[Any] = [proto.graph]
    graphs += [g for info in proto.training_info
               for g in (info.initialization, info.algorithm)]
    nodes: list[Any] = [n for function in proto.functions for n in function.node]
    tensors: list[Any] = []
    every_node: list[Any] = []
    while graphs or nodes:
        if graphs:
            graph = graphs.pop()
            tensors.extend(graph.initializer)
            tensors.extend(t for s in graph.sparse_initializer for t in (s.values, s.indices))
            nodes.extend(graph.node)
            continue
        node = nodes.pop()
        every_node.append(node)
        for attribute in node.attribute:
            tensors.append(attribute.t)
            tensors.extend(attribute.tensors)
            sparse = [attribute.sparse_tensor, *attribute.sparse_tensors]
            tensors.extend(t for s in sparse for t in (s.values, s.indices))
            if attribute.HasField("g"):
                graphs.append(attribute.g)
            graphs.extend(attribute.graphs)
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            where = {e.key: e.value for e in tensor.external_data}.get("location", "?")
            raise ArtifactError(f"the ONNX model keeps tensor {tensor.name!r} in external "
                                f"data ({where!r}); only self-contained models are served")
        if tensor.data_type == onnx.TensorProto.STRING:
            _check_onnx_strings(f"tensor {tensor.name!r}", tensor.string_data)
    for node in every_node:
        for attribute in node.attribute:
            _check_onnx_strings(f"node {node.name or node.op_type!r}",
                                [attribute.s, *attribute.strings])


def _check_onnx_strings(where: str, values: Any) -> None:
    """A string the model holds may become a prediction (a class label), logged and sent as
    JSON: it must be UTF-8 text without NUL (PostgreSQL refuses NUL in text)."""
    for value in values:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ArtifactError(f"the ONNX model's {where} holds a string that is not UTF-8 "
                                "text") from None
        if "\x00" in text:
            raise ArtifactError(f"the ONNX model's {where} holds a string with a NUL "
                                "character")


# ONNX input types a feature can feed, by what onnxruntime calls them.
ONNX_NUMBERS: dict[str, type] = {"tensor(float)": np.float32, "tensor(double)": np.float64,
                                 "tensor(int64)": np.int64, "tensor(int32)": np.int32}
ONNX_INTEGERS = frozenset({"tensor(int64)", "tensor(int32)"})
ONNX_STRING = "tensor(string)"
ONNX_OUTPUTS = frozenset({*ONNX_NUMBERS, ONNX_STRING, "tensor(bool)"})
ONNX_SHAPES = ("one input per feature of shape [N, 1] (float, double, int64, int32 or "
               "string), as skl2onnx makes from a DataFrame, or one float/double input of "
               "shape [N, number of features]")


class OnnxModel:
    """An ONNX model: named inputs (one per feature) or one float tensor; first output = label.

    The inputs are checked here (tensors of a served type, two dimensions); which feature
    feeds which input is decided by :meth:`bind`, once the deployment's features are known.
    """

    def __init__(self, model: bytes | Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        data = model if isinstance(model, bytes) else Path(model).read_bytes()
        check_onnx_tensors(data)
        self.session = onnxruntime.InferenceSession(data, options,
                                                    providers=["CPUExecutionProvider"])
        self.inputs = self.session.get_inputs()
        if not self.inputs:
            raise ArtifactError("the ONNX model takes no input")
        for node in self.inputs:
            if node.type not in ONNX_NUMBERS and node.type != ONNX_STRING:
                raise ArtifactError(f"the ONNX model's input {node.name!r} is a {node.type}; "
                                    f"served models take {ONNX_SHAPES}")
            if len(node.shape) != 2:
                raise ArtifactError(f"the ONNX model's input {node.name!r} has shape "
                                    f"{node.shape}; served models take {ONNX_SHAPES}")
        output = self.session.get_outputs()[0]
        if output.type not in ONNX_OUTPUTS:
            raise ArtifactError(f"the ONNX model's first output {output.name!r} is a "
                                f"{output.type}; it must be the predicted label or value "
                                "(a tensor of numbers, strings or booleans)")
        self.output = output.name
        self.input = self.inputs[0].name

    def bind(self, kinds: Mapping[str, str], nullable: Collection[str] = ()) -> OnnxFeeds:
        """How rows of the declared features become this model's inputs, or ArtifactError
        naming the input that no declared feature can feed."""
        names = [node.name for node in self.inputs]
        one_column = all(node.shape[1] in (1, None) or isinstance(node.shape[1], str)
                         for node in self.inputs)
        if all(name in kinds for name in names) and one_column:
            return self._named(kinds, nullable)
        if len(self.inputs) == 1 and self.inputs[0].type in ("tensor(float)", "tensor(double)"):
            return self._tensor(kinds)
        undeclared = [name for name in names if name not in kinds]
        raise ArtifactError(
            f"the ONNX model needs input(s) {undeclared or names} that the deployment does "
            f"not declare as features (it declares {list(kinds)}); served models take "
            f"{ONNX_SHAPES}")

    def _named(self, kinds: Mapping[str, str], nullable: Collection[str]) -> OnnxFeeds:
        for node in self.inputs:
            kind = kinds[node.name]
            wants = "string" if node.type == ONNX_STRING else "number"
            if kind != wants:
                raise ArtifactError(f"the ONNX model's input {node.name!r} takes "
                                    f"{wants}s ({node.type}) but the deployment declares "
                                    f"feature {node.name} as a {kind}")
            if node.type in ONNX_INTEGERS and node.name in nullable:
                raise ArtifactError(f"feature {node.name} is nullable but the ONNX model's "
                                    f"input {node.name!r} is a {node.type}, which cannot hold "
                                    "a null; export it as float or declare it \"number\"")
        inputs = [(node.name, ONNX_NUMBERS.get(node.type, object)) for node in self.inputs]
        ignored = [name for name in kinds if name not in {n for n, _ in inputs}]
        return OnnxFeeds(inputs, None, ignored)

    def _tensor(self, kinds: Mapping[str, str]) -> OnnxFeeds:
        node = self.inputs[0]
        strings = [name for name, kind in kinds.items() if kind != "number"]
        if strings:
            raise ArtifactError(f"the ONNX model takes one tensor of numbers ({node.name!r}), "
                                f"which cannot hold the string feature(s) {strings}; export "
                                "it with one input per column (skl2onnx does, given a "
                                "DataFrame)")
        width = node.shape[1]
        if isinstance(width, int) and width != len(kinds):
            raise ArtifactError(f"the ONNX model's input {node.name!r} takes {width} "
                                f"columns but the deployment declares {len(kinds)} "
                                f"features {list(kinds)}")
        return OnnxFeeds([(node.name, ONNX_NUMBERS[node.type])], list(kinds), [])

    def predict(self, rows: Mapping[str, np.ndarray] | np.ndarray) -> np.ndarray:
        """The first output for ``rows``: a dict of input name -> column (see
        :meth:`OnnxFeeds.build`), or a float array for a model of one tensor input."""
        feeds = (dict(rows) if isinstance(rows, Mapping) else {
            self.input: np.asarray(rows, ONNX_NUMBERS.get(self.inputs[0].type, np.float32))})
        output = np.asarray(self.session.run([self.output], feeds)[0])
        if output.ndim == 2 and output.shape[1] == 1:  # regressors: (n, 1)
            output = output[:, 0]
        return output

    def non_finite_outputs(self, feeds: Mapping[str, np.ndarray]) -> list[str]:
        """The outputs (label, probabilities, scores) holding NaN or infinity for ``feeds``:
        a graph without an imputer answers a NaN with a label all the same, so the nullable
        check looks at everything it computes."""
        found = []
        for node, value in zip(self.session.get_outputs(), self.session.run(None, dict(feeds)),
                               strict=True):
            values = value if isinstance(value, list) else [value]
            numbers = [np.asarray(list(v.values()) if isinstance(v, dict) else v)
                       for v in values]
            if any(a.dtype.kind in "fc" and not np.all(np.isfinite(a)) for a in numbers):
                found.append(node.name)
        return found


@dataclass(frozen=True)
class OnnxFeeds:
    """Rows of features -> an ONNX model's inputs.

    ``inputs``: (input name, numpy type) in the model's order. ``tensor``: None when each
    input is the feature of the same name (a column [N, 1]); else the features, in order,
    that form the one input's columns. ``ignored``: declared features no input takes.
    """

    inputs: list[tuple[str, type]]
    tensor: list[str] | None
    ignored: list[str]

    @property
    def integers(self) -> dict[str, tuple[int, int]]:
        """Features fed to integer inputs -> the range they hold (a request must send
        whole numbers in it)."""
        if self.tensor is not None:
            return {}
        return {name: (int(np.iinfo(kind).min), int(np.iinfo(kind).max))
                for name, kind in self.inputs if np.issubdtype(kind, np.integer)}

    def build(self, rows: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """One array per input; a null number is NaN, a null string ``""``."""
        if self.tensor is not None:
            (name, kind), = self.inputs
            table = np.array([[x[f] for f in self.tensor] for x in rows], dtype=np.float64)
            return {name: table.astype(kind, copy=False)}
        feeds = {}
        for name, kind in self.inputs:
            if kind is object:
                column = np.array(["" if x[name] is None else x[name] for x in rows],
                                  dtype=object)
            elif np.issubdtype(kind, np.integer):
                column = np.array([x[name] for x in rows], dtype=kind)
            else:
                column = np.array([x[name] for x in rows], dtype=np.float64).astype(kind)
            feeds[name] = column.reshape(-1, 1)
        return feeds


# ------------------------------------------------------------------ speed
class SlowCalls:
    """Judges a model's speed on repeated calls, so one hiccup never quarantines it.

    The first ``warmup`` calls after loading (or :meth:`reset`) are not judged (caches,
    lazy imports, first allocations). Afterwards a call is slow when its wall time exceeds
    ``limit_seconds``; once ``strikes`` of the last ``window`` judged calls were slow, the
    next :meth:`check` raises :class:`ModelTimeoutError` (and keeps raising until reset).

    Wall time, not CPU time, decides. A model that waits on I/O (a feature store, a lock,
    a sleep) burns no CPU yet makes every request slow, so it must be caught; and thread
    CPU time cannot tell such a wait from a thread starved by a busy machine either. What
    filters a busy or paused process is the k-of-n rule and the warm-up. The thread's CPU
    time is still measured and reported (``median_cpu_ms`` and in the error message), so
    whoever reads a quarantine can tell a model that computed for long (CPU close to wall)
    from one that waited (CPU far below wall).
    """

    def __init__(self, limit_seconds: float, *, window: int = 20, strikes: int = 5,
                 warmup: int = 3, clock: Callable[[], float] = time.perf_counter,
                 cpu_clock: Callable[[], float] = time.thread_time,
                 listener: Callable[[float], None] | None = None) -> None:
        if limit_seconds <= 0 or window < 1 or not 1 <= strikes <= window or warmup < 0:
            raise ValueError("SlowCalls needs limit > 0, window >= 1, 1 <= strikes <= "
                             "window and warmup >= 0")
        self.limit = limit_seconds
        self.window = window
        self.strikes = strikes
        self.warmup = warmup
        self.clock = clock
        self.cpu_clock = cpu_clock
        self.listener = listener  # every call's wall time, warm-up included (for metrics)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget the past: a reinstated version starts with a fresh warm-up."""
        with self._lock:
            self._calls = 0
            self._slow = 0
            self._last: float | None = None
            self._recent: deque[tuple[float, float]] = deque(maxlen=self.window)
            self._tripped: str | None = None

    def check(self) -> None:
        """Raise ModelTimeoutError if the model has been slow too often."""
        if self._tripped is not None:
            raise ModelTimeoutError(self._tripped)

    def record(self, wall_seconds: float, cpu_seconds: float = 0.0) -> None:
        """Count one call (a batch counts once)."""
        if self.listener is not None:
            self.listener(wall_seconds)
        with self._lock:
            self._calls += 1
            self._last = wall_seconds
            if self._calls <= self.warmup:
                return
            self._recent.append((wall_seconds, cpu_seconds))
            slow = sum(wall > self.limit for wall, _ in self._recent)
            self._slow += wall_seconds > self.limit
            if slow >= self.strikes and self._tripped is None:
                walls = [w for w, _ in self._recent]
                cpus = [c for _, c in self._recent]
                self._tripped = (
                    f"{slow} of the last {len(walls)} calls over the "
                    f"{self.limit * 1000:.0f} ms timeout (median "
                    f"{statistics.median(walls) * 1000:.0f} ms, of which "
                    f"{statistics.median(cpus) * 1000:.0f} ms on CPU)")

    def timed(self, call: Callable[[], Any]) -> Any:
        """Check, run the call, record its wall and thread CPU time; return its result."""
        self.check()
        cpu = self.cpu_clock()
        started = self.clock()
        try:
            return call()
        finally:  # a call that fails slowly (a feature store timing out) is a slow call too
            self.record(self.clock() - started, self.cpu_clock() - cpu)

    def stats(self) -> dict[str, Any]:
        """Calls since the last reset, slow judged calls, median/last wall time, CPU median."""
        with self._lock:
            walls = [w for w, _ in self._recent]
            cpus = [c for _, c in self._recent]
            return {
                "calls": self._calls,
                "slow": self._slow,
                "median_ms": statistics.median(walls) * 1000 if walls else None,
                "median_cpu_ms": statistics.median(cpus) * 1000 if cpus else None,
                "last_ms": self._last * 1000 if self._last is not None else None,
                "tripped": self._tripped is not None,
            }


# ------------------------------------------------------------------ serving
class ServedModel:
    """A model behind the service: feature mappings in, plain JSON-able predictions out.

    ``features``: name -> kind (``"number"``, ``"string"``, with ``?`` when nullable; see
    :mod:`banditops.service.features`), or a plain list of names (all numbers). What the
    model receives: an ONNX model its inputs (:meth:`OnnxModel.bind`); a model fitted on
    a DataFrame (``feature_names_in_``) a frame of those columns, numbers as float64 and
    strings as pandas strings (with a plain list of names, as pandas infers them); any
    other model a float array in the declared order. A null
    number is NaN; a null string NaN, or the string an imputer over that column declares as
    missing, and ``""`` for ONNX.
    """

    def __init__(self, model: Any, features: list[str] | Mapping[str, str],
                 timeout_seconds: float, *, window: int = 20, strikes: int = 5,
                 warmup: int = 3, listener: Callable[[float], None] | None = None) -> None:
        if not callable(getattr(model, "predict", None)):
            raise ArtifactError(f"the artifact holds a {type(model).__name__}, which has no "
                                "predict()")
        self.model = model
        self.features = list(features)
        self.typed = isinstance(features, Mapping)  # else: pandas infers the column types
        declared = (dict(features) if isinstance(features, Mapping)
                    else dict.fromkeys(self.features, "number"))
        self.kinds = base_kinds(declared)  # for healthy(); "number" or "string"
        self.nullable = nullable_features(declared)
        self.timeout = timeout_seconds
        self.slow = SlowCalls(timeout_seconds, window=window, strikes=strikes, warmup=warmup,
                              listener=listener)
        self.onnx = model.bind(self.kinds, self.nullable) if isinstance(model, OnnxModel) \
            else None
        self.ignored: list[str] = self.onnx.ignored if self.onnx is not None else []
        self.integers = self.onnx.integers if self.onnx is not None else {}
        names = getattr(model, "feature_names_in_", None)
        self.named = names is not None and self.onnx is None
        if self.named:
            missing = [str(n) for n in names if n not in self.features]
            if missing:
                raise ArtifactError(f"the model needs features {missing} that the deployment "
                                    "does not declare")
            self.columns = [str(n) for n in names]
            self.ignored = [f for f in self.features if f not in self.columns]
            nulls = string_nulls(model)
            self._string_null = {c: nulls.get(c, math.nan) for c in self.columns
                                 if self.kinds[c] == "string"}

    def _input(self, rows: list[Mapping[str, Any]]) -> Any:
        if self.onnx is not None:
            return self.onnx.build(rows)
        if self.named:
            import pandas as pd

            if not self.typed:
                return pd.DataFrame([[x[c] for c in self.columns] for x in rows],
                                    columns=self.columns)
            columns: dict[str, Any] = {}
            for c in self.columns:
                if c in self._string_null:
                    null = self._string_null[c]
                    values = [null if x[c] is None else x[c] for x in rows]
                    # pandas infers its string type from a list (4x faster than asking);
                    # a column of nulls only would be read as floats
                    columns[c] = (values if any(isinstance(v, str) for v in values)
                                  else pd.array(values, dtype="str"))
                else:
                    columns[c] = [math.nan if x[c] is None else float(x[c]) for x in rows]
            return pd.DataFrame(columns)
        return np.array([[x[name] for name in self.features] for x in rows], dtype=float)

    def predict_many(self, rows: list[Mapping[str, Any]]) -> list[Any]:
        """One model call for all rows; one plain Python scalar per row, or ArtifactError."""
        if not rows:
            return []
        frame = self._input(rows)
        output = self.slow.timed(lambda: self.model.predict(frame))
        return plain_predictions(output, len(rows))

    def predict_one(self, x: Mapping[str, Any]) -> Any:
        return self.predict_many([x])[0]

    def healthy(self) -> bool:
        """Whether the model still predicts the smoke test's two rows well-formedly.

        Decides whether one failed request is about its input (healthy: keep serving) or
        about the version. Not timed (a slow spell is SlowCalls' business) and never raises.
        """
        try:
            rows = synthetic_rows(self.model, self.kinds)
            plain_predictions(self.model.predict(self._input(rows)), len(rows))
        except Exception:
            return False
        return True

    def reset(self) -> None:
        """A reinstated version: a fresh warm-up and no memory of past slowness."""
        self.slow.reset()

    def stats(self) -> dict[str, Any]:
        """Call timings for reports (see :meth:`SlowCalls.stats`)."""
        return self.slow.stats()


def plain_predictions(output: Any, expected: int) -> list[Any]:
    """The model's output as one JSON-safe scalar per row (str, bool, int, finite float)."""
    try:
        array = np.asarray(output)
    except (TypeError, ValueError) as error:
        raise ArtifactError(f"the model returned something that is not one prediction per "
                            f"row: {type(output).__name__} ({error})") from None
    if array.ndim != 1:
        raise ArtifactError(f"the model returned an array of shape {array.shape}; expected "
                            f"one prediction per row ({expected},)")
    if len(array) != expected:
        raise ArtifactError(f"the model returned {len(array)} predictions for {expected} rows")
    return [plain_scalar(value) for value in array.tolist()]


def plain_scalar(value: Any) -> str | bool | int | float:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise ArtifactError(f"the model predicted {value!r} ({type(value).__name__}); a prediction "
                        "must be a string, a boolean, an integer or a finite number")


# ------------------------------------------------------------------ smoke test
def smoke_test(served: ServedModel, features: Mapping[str, str], labels: list | None) -> None:
    """Two synthetic rows from the feature schema must give one valid prediction each, and
    a null in each nullable feature must be answered too (:func:`check_nullable`).

    Numbers are 0.0 then 1.0; strings are "" then a category the model knows (from a
    fitted OneHotEncoder/OrdinalEncoder) or "unknown". Passing means: no exception, one
    JSON-safe scalar per row, and each in ``labels`` when labels are declared (type-aware:
    the string "1" is not the integer 1).
    """
    rows = synthetic_rows(served.model, features)
    try:
        predictions = served.predict_many(rows)
    except ArtifactError as error:
        raise ArtifactError(f"smoke test failed: {error}") from None
    except Exception as error:
        raise ArtifactError(f"smoke test failed: the model raised {type(error).__name__}: "
                            f"{error}") from None
    _check_labels(predictions, labels, "smoke test failed")
    check_nullable(served, features, labels)


def _check_labels(predictions: list[Any], labels: list | None, what: str) -> None:
    if labels is not None:
        declared = {(type(label), label) for label in labels}
        unknown = [p for p in predictions if (type(p), p) not in declared]
        if unknown:
            raise ArtifactError(f"{what}: the model predicted {unknown[0]!r}, "
                                f"which is not one of the declared labels {labels}")


def check_nullable(served: ServedModel, features: Mapping[str, str],
                   labels: list | None = None) -> None:
    """Each nullable feature must take a null: the model must answer a row with that
    feature null (and one with all of them null) with a valid prediction, computing no NaN
    on the way (scikit-learn's finiteness checks on, so a model without an imputer raises;
    an ONNX graph's every output looked at). Else ArtifactError naming the feature."""
    rows = null_rows(served.model, features)
    if not rows:
        return
    import sklearn

    def fails(batch: list[dict[str, Any]]) -> str | None:
        try:
            with sklearn.config_context(assume_finite=False):  # not timed: not traffic
                predictions = plain_predictions(served.model.predict(served._input(batch)),
                                                len(batch))
                if served.onnx is not None:
                    nan = served.model.non_finite_outputs(served.onnx.build(batch))
                    if nan:
                        return f"its output(s) {nan} hold NaN"
            _check_labels(predictions, labels, "it")
        except ArtifactError as error:
            return str(error)
        except Exception as error:
            first = str(error).strip().split("\n")[0]
            return f"the model raised {type(error).__name__}: {first}"
        return None

    if fails(rows) is None:
        return
    for name in nullable_features(features):  # whose null is it?
        why = fails([row for row in rows[:-1] if row[name] is None])
        if why is not None:
            kind = features[name]
            raise ArtifactError(
                f"feature {name} is nullable ({kind!r}) but the model fails on a null "
                f"{name}: {why}; give the model an imputer for it, or declare it "
                f"{base(kind)!r} (not nullable)")
    why = fails(rows[-1:])
    raise ArtifactError(f"the nullable features {nullable_features(features)} are declared "
                        f"but the model fails when all of them are null: {why}")


def synthetic_rows(model: Any, features: Mapping[str, str]) -> list[dict[str, Any]]:
    """The smoke test's two rows: numbers 0.0 and 1.0; strings "" and a known category."""
    known = known_categories(model)
    rows: list[dict[str, Any]] = [{}, {}]
    for name, kind in base_kinds(features).items():
        if kind == "number":
            rows[0][name], rows[1][name] = 0.0, 1.0
        else:
            rows[0][name], rows[1][name] = "", known.get(name, "unknown")
    return rows


def null_rows(model: Any, features: Mapping[str, str]) -> list[dict[str, Any]]:
    """The second synthetic row with each nullable feature null in turn, then with all of
    them null; no rows when no feature is nullable."""
    nullable = nullable_features(features)
    if not nullable:
        return []
    row = synthetic_rows(model, features)[1]
    return [*({**row, name: None} for name in nullable), {**row, **dict.fromkeys(nullable)}]


def _column_steps(model: Any) -> Iterator[tuple[str, list[Any]]]:
    """(column, the steps applied to it) for each named column of the model's
    ColumnTransformers (a transformer's steps when it is a Pipeline)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    try:
        for obj in _reachable(model, limit=100_000):
            if not isinstance(obj, ColumnTransformer):
                continue
            for _, step, columns in getattr(obj, "transformers_", []):
                steps = [s for _, s in step.steps] if isinstance(step, Pipeline) else [step]
                if isinstance(columns, list):
                    for index, column in enumerate(columns):
                        if isinstance(column, str):
                            yield column, steps, index
    except (ArtifactError, AttributeError, TypeError):
        return


def known_categories(model: Any) -> dict[str, str]:
    """A string category each encoded column was fitted with, where the model shows one."""
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    found: dict[str, str] = {}
    for column, steps, index in _column_steps(model):
        encoder = next((s for s in steps if isinstance(s, OneHotEncoder | OrdinalEncoder)),
                       None)
        categories = getattr(encoder, "categories_", None)
        if categories is None or index >= len(categories):
            continue
        strings = [c for c in categories[index].tolist() if isinstance(c, str) and c]
        if strings:
            found.setdefault(column, strings[0])
    return found


def string_nulls(model: Any) -> dict[str, str]:
    """Columns whose first imputer declares a string as missing (``missing_values=""``, as
    ONNX exports need): a null string is given to the model as that string."""
    from sklearn.impute import SimpleImputer

    found: dict[str, str] = {}
    for column, steps, _ in _column_steps(model):
        imputer = next((s for s in steps if isinstance(s, SimpleImputer)), None)
        missing = getattr(imputer, "missing_values", None)
        if isinstance(missing, str):
            found.setdefault(column, missing)
    return found


# ------------------------------------------------------------------ isolated check
def check_in_subprocess(path: str | Path, allowed: list[Path], *, allow_pickle: bool,
                        extra_trusted: tuple[str, ...] | list[str] = (),
                        features: Mapping[str, str], labels: list | None,
                        timeout_seconds: float = 60) -> None:
    """Load, wrap and smoke-test an artifact in a child process first.

    The content checks cover the index arrays we know compiled code follows; this is the
    defence for those we don't: a model that corrupts memory, spins or kills its process
    takes down the child, and the version is refused instead of crashing the server.
    """
    import subprocess
    import sys

    request = json.dumps({"path": str(path), "allowed": [str(a) for a in allowed],
                          "allow_pickle": allow_pickle, "extra_trusted": list(extra_trusted),
                          "features": dict(features), "labels": labels})
    try:
        done = subprocess.run([sys.executable, "-m", "banditops.service.artifacts", request],
                              capture_output=True, text=True, timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        raise ArtifactError(f"checking the model took over {timeout_seconds:g} s in the "
                            "checking process; refused") from None
    if done.returncode < 0:
        raise ArtifactError(f"the model crashed the checking process (signal "
                            f"{-done.returncode})")
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict) or done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ArtifactError(f"the checking process failed (exit {done.returncode}): "
                            f"{tail[0]}")
    if answer.get("error") is not None:
        raise ArtifactError(str(answer["error"]))


def _check_here(request: Mapping[str, Any]) -> None:
    loaded = load_artifact(request["path"], [Path(a) for a in request["allowed"]],
                           allow_pickle=request["allow_pickle"],
                           extra_trusted=request["extra_trusted"])
    features = request["features"]
    served = ServedModel(loaded.model, features, 3600.0)
    smoke_test(served, features, request["labels"])


def _main(argv: list[str]) -> int:
    """The child side of check_in_subprocess: one JSON line with the error or none."""
    try:
        _check_here(json.loads(argv[0]))
    except ArtifactError as error:
        print(json.dumps({"error": str(error)}), flush=True)
        return 0
    print(json.dumps({"error": None}), flush=True)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
