"""Turning request rows into a model's input and its output into JSON: no I/O.

A model's expected columns are the `feature_names_in_` of its fitted pipeline (scikit-learn sets it
when fitted on a DataFrame). A model fitted on a bare array has no column names: its rows are
then taken in the key order of the first row, and only their number is checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier

Scalar = str | int | float | bool | None


class InvalidInputs(Exception):
    """The request's rows cannot be given to the model; the message names the problem."""


@dataclass(frozen=True)
class Outputs:
    """What a model answered for a batch of rows."""

    predictions: list[Any]
    probabilities: list[dict[str, float]] | None


def validate_rows(inputs: object) -> list[dict[str, Scalar]]:
    """`inputs` as a list of rows, or `InvalidInputs` naming what is wrong with it."""
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInputs("'inputs' must be a non-empty list of objects mapping feature name to value")
    for index, row in enumerate(inputs):
        if not isinstance(row, dict):
            raise InvalidInputs(f"inputs[{index}] must be an object mapping feature name to value")
        for column, value in row.items():
            if not isinstance(value, str | int | float | bool) and value is not None:
                raise InvalidInputs(
                    f"inputs[{index}][{column!r}] must be a number, string, boolean or null, "
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


def features_frame(estimator: Any, rows: list[dict[str, Scalar]]) -> pd.DataFrame:
    """The rows as a DataFrame with the model's columns; `InvalidInputs` names missing columns."""
    columns = expected_columns(estimator, rows)
    for index, row in enumerate(rows):
        missing = [column for column in columns if column not in row]
        if missing:
            raise InvalidInputs(
                f"inputs[{index}] lacks feature columns {missing}; the model expects {columns}"
            )
    return pd.DataFrame([[row[column] for column in columns] for row in rows], columns=columns)


def predict(estimator: Any, frame: pd.DataFrame) -> Outputs:
    """Labels (and class probabilities when the model has them) or numbers, as JSON values.

    Values the model cannot use (text in a numeric column, say) raise `InvalidInputs`.
    """
    try:
        predictions = np.asarray(estimator.predict(frame)).tolist()
        probabilities = None
        if is_classifier(estimator) and hasattr(estimator, "predict_proba"):
            classes = [str(label) for label in np.asarray(estimator.classes_).tolist()]
            probabilities = [
                dict(zip(classes, row, strict=True))
                for row in np.asarray(estimator.predict_proba(frame)).tolist()
            ]
    except (ValueError, TypeError) as error:
        raise InvalidInputs(f"the model cannot use these inputs: {error}") from error
    return Outputs(predictions=predictions, probabilities=probabilities)
