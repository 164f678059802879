"""Turning request rows into a model's input and its output into JSON: no I/O.

A model's expected columns and their types are its `InputSchema` (schema.py: the MLflow signature in
its verified files, else the `feature_names_in_` of its fitted pipeline). A model with neither has
no column names: its rows are then taken in the key order of the first row, and only their number
is checked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier
from sklearn.pipeline import Pipeline

from .schema import InputSchema, InvalidInputs

logger = logging.getLogger("modelfleet.serving")

Scalar = str | int | float | bool | None

#: Classifiers whose `predict` is the class of highest `predict_proba` (ties to the first class, as
#: both do). For them one pass over the pipeline gives labels and probabilities; running `predict`
#: and `predict_proba` would transform the row twice, doubling the cost of a one-row request.
ARGMAX_CLASSIFIERS = frozenset(
    {
        "LogisticRegression",
        "HistGradientBoostingClassifier",
        "GradientBoostingClassifier",
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
    }
)


class TooLarge(Exception):
    """The request exceeds a cap (rows, columns); the message names the cap."""


@dataclass(frozen=True)
class Outputs:
    """What a model answered for a batch of rows."""

    predictions: list[Any]
    probabilities: list[dict[str, float]] | None


def validate_rows(
    inputs: object, *, max_rows: int, max_columns: int, field: str = "inputs"
) -> list[dict[str, Scalar]]:
    """`inputs` as a list of rows; `TooLarge` beyond the caps, `InvalidInputs` naming any other problem."""
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInputs(f"{field!r} must be a non-empty list of objects mapping feature name to value")
    if len(inputs) > max_rows:
        raise TooLarge(f"{field!r} has {len(inputs)} rows; at most {max_rows} rows per request")
    for index, row in enumerate(inputs):
        if not isinstance(row, dict):
            raise InvalidInputs(f"{field}[{index}] must be an object mapping feature name to value")
        if len(row) > max_columns:
            raise TooLarge(f"{field}[{index}] has {len(row)} columns; at most {max_columns} per row")
        for column, value in row.items():
            if not isinstance(value, str | int | float | bool) and value is not None:
                raise InvalidInputs(
                    f"{field}[{index}][{column!r}] must be a number, string, boolean or null, "
                    f"not {type(value).__name__}"
                )
    return inputs


def expected_columns(estimator: Any, rows: list[dict[str, Scalar]]) -> list[str]:
    """The columns the model was fitted on, in order."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        return [str(name) for name in names]
    columns = list(rows[0])
    count = getattr(estimator, "n_features_in_", None)
    if count is not None and len(columns) != count:
        raise InvalidInputs(f"the model expects {count} features per row, inputs[0] has {len(columns)}")
    return columns


def features_frame(
    estimator: Any, rows: list[dict[str, Scalar]], schema: InputSchema | None = None
) -> pd.DataFrame:
    """The rows as a DataFrame with the model's columns; `InvalidInputs` names missing, extra or
    mistyped features (checked against `schema` when the model has one)."""
    if schema is not None:
        schema.check(rows)
    columns = schema.columns if schema is not None else expected_columns(estimator, rows)
    for index, row in enumerate(rows):
        missing = [column for column in columns if column not in row]
        if missing:
            raise InvalidInputs(
                f"inputs[{index}] lacks feature columns {missing}; the model expects {columns}"
            )
    # An object Index, not pandas 3's Arrow-backed strings: scikit-learn's feature-name checks and
    # column selection convert the names on every call, and that cost dominated one-row requests.
    return pd.DataFrame(
        [[row[column] for column in columns] for row in rows], columns=pd.Index(columns, dtype=object)
    )


def predict(estimator: Any, frame: pd.DataFrame) -> Outputs:
    """Labels (and class probabilities when the model has them) or numbers, as JSON values.

    Values the model still cannot use raise `InvalidInputs` with a plain message; the library's own
    message is logged, never returned (it tells a caller about the model's internals).
    """
    try:
        if not (is_classifier(estimator) and hasattr(estimator, "predict_proba")):
            return Outputs(predictions=np.asarray(estimator.predict(frame)).tolist(), probabilities=None)
        classes = np.asarray(estimator.classes_)
        scores = np.asarray(estimator.predict_proba(frame))
        if type(_final_step(estimator)).__name__ in ARGMAX_CLASSIFIERS:
            predictions = classes[scores.argmax(axis=1)].tolist()
        else:
            predictions = np.asarray(estimator.predict(frame)).tolist()
    except (ValueError, TypeError) as error:
        logger.warning("the model could not use a request's inputs: %s: %s", type(error).__name__, error)
        raise InvalidInputs(
            "the model could not use these inputs; check each feature's value and type"
        ) from error
    names = [str(label) for label in classes.tolist()]
    probabilities = [dict(zip(names, row, strict=True)) for row in scores.tolist()]
    return Outputs(predictions=predictions, probabilities=probabilities)


def _final_step(estimator: Any) -> Any:
    return estimator[-1] if isinstance(estimator, Pipeline) else estimator
