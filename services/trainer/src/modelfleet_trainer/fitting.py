"""Fit a template on a dataset version: select rows, check columns, split, fit, score the holdout.

Pure computation (no I/O): the same inputs give the same model and metrics, in any process.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as pdtypes
from sklearn.metrics import (
    accuracy_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.pipeline import Pipeline

from modelfleet_contracts.specs import ModelSpecBody
from modelfleet_contracts.training import Task

from .domain import MissingColumns, NotEnoughData, TrainingDataError, UnsupportedColumnType
from .templates import FeatureKinds, PipelineTemplate, TemplateParams

#: Fewest rows (after the row filter) a model is trained on: below it, metrics mean nothing.
MIN_ROWS = 10
#: Rows of the training features kept as the model's input example (signature inference).
EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class FittedModel:
    """A fitted pipeline and what is known about it."""

    pipeline: Pipeline
    #: Holdout rows with every column the evaluator needs: features, target, cohorts, time.
    holdout: pd.DataFrame
    metrics: dict[str, float]
    train_rows: int
    duration_seconds: float
    #: The first training rows (features only): a cheap base for the model signature.
    input_example: pd.DataFrame


def unique(columns: Sequence[str]) -> list[str]:
    """Columns in first-seen order, each once."""
    return list(dict.fromkeys(columns))


def check_columns(frame: pd.DataFrame, wanted: Mapping[str, Sequence[str]], dataset: str) -> None:
    """Raise `MissingColumns` naming every absent column by role, and listing the available ones."""
    available = set(frame.columns)
    missing = {role: [c for c in columns if c not in available] for role, columns in wanted.items()}
    missing = {role: columns for role, columns in missing.items() if columns}
    if missing:
        described = "; ".join(f"{role}: {columns}" for role, columns in missing.items())
        raise MissingColumns(
            f"columns missing from {dataset}: {described}; available columns: {list(frame.columns)}"
        )


def select_rows(frame: pd.DataFrame, where: Mapping[str, Any], dataset: str) -> pd.DataFrame:
    """Rows where every `where` column equals its value; `NotEnoughData` if none are left."""
    if not where:
        return frame
    mask = np.ones(len(frame), dtype=bool)
    for column, value in where.items():
        mask &= (frame[column] == value).to_numpy(dtype=bool, na_value=False)
    selected = frame[mask]
    if selected.empty:
        seen = {column: sorted(map(str, frame[column].dropna().unique()[:10])) for column in where}
        raise NotEnoughData(
            f"row filter {dict(where)} leaves no rows of the {len(frame)} in {dataset}; "
            f"values present (up to 10 per column): {seen}"
        )
    return selected


def feature_kinds(frame: pd.DataFrame, features: Sequence[str]) -> FeatureKinds:
    """Numeric columns are scaled, string/bool/categorical ones one-hot encoded; others refused."""
    kinds = FeatureKinds()
    for column in features:
        dtype = frame[column].dtype
        if pdtypes.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
            kinds.categorical.append(column)
        elif pdtypes.is_numeric_dtype(dtype):
            kinds.numeric.append(column)
        elif pdtypes.is_string_dtype(dtype) or pdtypes.is_object_dtype(dtype):
            kinds.categorical.append(column)
        else:
            raise UnsupportedColumnType(
                f"feature {column!r} has type {dtype}; templates learn from numeric, string and bool "
                "columns (derive numbers such as day_of_week from timestamps in the data)"
            )
    return kinds


def _check_target(frame: pd.DataFrame, target: str, task: Task) -> None:
    values = frame[target]
    if task == "classification":
        classes = values.nunique()
        if classes < 2:
            raise NotEnoughData(
                f"target {target!r} has {classes} class(es) in the {len(frame)} training rows; "
                "classification needs at least two"
            )
    elif not pdtypes.is_numeric_dtype(values.dtype) or pdtypes.is_bool_dtype(values.dtype):
        raise UnsupportedColumnType(
            f"target {target!r} has type {values.dtype}; {task} needs a numeric target"
        )


def fit_template(
    template: PipelineTemplate[Any],
    params: TemplateParams,
    frame: pd.DataFrame,
    body: ModelSpecBody,
    *,
    dataset: str = "the dataset",
) -> FittedModel:
    """Fit `template` on the rows of `frame` the spec selects; raises a `PermanentTrainingError`
    subclass naming what to fix when the spec and the data do not fit together."""
    template.check_features(params, body.features)
    extra = template.extra_columns(params)
    check_columns(
        frame,
        {
            "features": body.features,
            "target": [body.target],
            "cohort columns": body.cohort_columns,
            "row filter": list(body.dataset.where),
            "template columns": extra,
        },
        dataset,
    )
    rows = select_rows(frame, body.dataset.where, dataset)
    rows = rows[rows[body.target].notna()]
    if len(rows) < MIN_ROWS:
        raise NotEnoughData(
            f"{len(rows)} rows with a target value in {dataset} after the row filter; "
            f"{template.ref} needs at least {MIN_ROWS}"
        )
    kinds = feature_kinds(rows, body.features)
    _check_target(rows, body.target, template.task)
    train, holdout = template.split(rows, body.target, params)
    pipeline = template.build(params, kinds)

    started = time.perf_counter()
    try:
        pipeline.fit(train[body.features], train[body.target])
    except (ValueError, TypeError) as error:
        raise TrainingDataError(f"{template.ref} could not fit {dataset}: {error}") from None
    duration = time.perf_counter() - started

    metrics = holdout_metrics(template.task, pipeline, holdout[body.features], holdout[body.target])
    kept = unique([*body.features, body.target, *body.cohort_columns, *extra])
    return FittedModel(
        pipeline=pipeline,
        holdout=holdout[kept].reset_index(drop=True),
        metrics=metrics,
        train_rows=len(train),
        duration_seconds=duration,
        input_example=train[body.features].head(EXAMPLE_ROWS).reset_index(drop=True),
    )


def holdout_metrics(
    task: Task, pipeline: Pipeline, features: pd.DataFrame, target: pd.Series
) -> dict[str, float]:
    """The task's metrics on the holdout (see `metric_names`)."""
    if task == "classification":
        return _classification_metrics(pipeline, features, target)
    predicted = np.asarray(pipeline.predict(features), dtype=float)
    actual = target.to_numpy(dtype=float)
    common = {
        "mae": float(mean_absolute_error(actual, predicted)),
        "rmse": float(root_mean_squared_error(actual, predicted)),
    }
    if task == "forecasting":
        return {"smape": smape(actual, predicted), **common}
    return {"r2": float(r2_score(actual, predicted)), **common}


def _classification_metrics(
    pipeline: Pipeline, features: pd.DataFrame, target: pd.Series
) -> dict[str, float]:
    classes = pipeline.classes_
    probabilities = pipeline.predict_proba(features)
    try:
        if len(classes) == 2:
            auc = {"roc_auc": float(roc_auc_score(target, probabilities[:, 1]))}
        else:
            auc = {
                "roc_auc_ovr": float(roc_auc_score(target, probabilities, multi_class="ovr", labels=classes))
            }
    except ValueError as error:
        raise NotEnoughData(f"the holdout cannot be scored (add rows or raise test_size): {error}") from None
    return {
        **auc,
        "accuracy": float(accuracy_score(target, pipeline.predict(features))),
        "log_loss": float(log_loss(target, probabilities, labels=classes)),
    }


def smape(actual: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any]) -> float:
    """Symmetric mean absolute percentage error, in percent (0 to 200); 0 where both values are 0."""
    scale = np.abs(actual) + np.abs(predicted)
    ratio = np.divide(2 * np.abs(predicted - actual), scale, out=np.zeros_like(scale), where=scale > 0)
    return float(100 * ratio.mean())
