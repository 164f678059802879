"""The types a fleet model file may ask skops to trust: an exact list, one tuple per pipeline family.

skops trusts scikit-learn's estimators and a few plain types by itself; anything else a file holds
must be named as trusted, and MLflow reads those names from the model's own MLmodel file. A name is
all skops checks, and it can call what it names (a `ConstructorFromReduceNode` calls the named
object with arguments from the file), so a prefix such as `numpy.` trusted `numpy.savetxt`, and any
function is a way to act during a load. Only the classes below are trusted, each because a fitted
pipeline of a trainer template holds it; the trainer's templates declare these tuples, and the
loader (`model_files.load_skops_model`) refuses a model that declares anything outside
`FLEET_TRUSTED_TYPES`. The trainer's tests fit every template, ask skops which types its file needs
(`skops.io.get_untrusted_types`) and check them against its tuple, and check that the fleet's list
is exactly the union of the templates' tuples.

Pure data: no imports, so the trainer uses it without skops.
"""

from __future__ import annotations

#: A class. `SimpleImputer` keeps the dtypes it was fitted on and fills with (`_fit_dtype`,
#: `_fill_dtype`); skops rebuilds each from a stored 0-d array (`DTypeNode`). Every template imputes.
NUMPY_DTYPE = "numpy.dtype"
#: A class: the fitted trees of histogram gradient boosting (skops does not trust it by default).
HIST_GRADIENT_BOOSTING_TREE = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
#: A class: the fitted splines of `SplineTransformer` (`bsplines_`).
BSPLINE = "scipy.interpolate._bsplines.BSpline"
#: The one function trusted, strictly needed by `BSPLINE`: with scipy's array API support a `BSpline`
#: keeps its array namespace's `asarray` as an attribute (`_asarray`) and calls it in `.t`, `.c` and
#: `__call__`, so `SplineTransformer.transform` cannot run without it. It converts its argument to a
#: numpy array (array-api-compat's wrapper of `numpy.asarray`): no file, process or code access.
#: It is named by its vendored path, so a scipy upgrade that moves it fails the trainer's test.
BSPLINE_ASARRAY = "scipy._lib.array_api_compat.numpy._aliases.asarray"

#: Linear templates (logistic regression, ridge) on imputed, scaled and one-hot encoded columns.
LINEAR_PIPELINE_TYPES: tuple[str, ...] = (NUMPY_DTYPE,)
#: Histogram gradient boosting on the same preprocessing.
HIST_GRADIENT_BOOSTING_TYPES: tuple[str, ...] = (NUMPY_DTYPE, HIST_GRADIENT_BOOSTING_TREE)
#: Ridge on periodic seasonal splines (the time-series forecaster).
SPLINE_PIPELINE_TYPES: tuple[str, ...] = (NUMPY_DTYPE, BSPLINE, BSPLINE_ASARRAY)

#: Every type a fleet model may declare as trusted: the union of the templates' tuples, nothing else.
FLEET_TRUSTED_TYPES: frozenset[str] = frozenset(
    (*LINEAR_PIPELINE_TYPES, *HIST_GRADIENT_BOOSTING_TYPES, *SPLINE_PIPELINE_TYPES)
)
#: The entries of `FLEET_TRUSTED_TYPES` that are not classes, each justified above.
TRUSTED_FUNCTIONS: frozenset[str] = frozenset({BSPLINE_ASARRAY})
