"""Tabular templates: one row per example, a random holdout, a linear or boosted estimator."""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pydantic import Field
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from modelfleet_common.skops_types import HIST_GRADIENT_BOOSTING_TYPES, LINEAR_PIPELINE_TYPES

from ..domain import NotEnoughData
from .base import FeatureKinds, PipelineTemplate, SplitParams, tabular_preprocessor


class LogisticRegressionParams(SplitParams):
    """`tabular-classifier` v1."""

    C: float = Field(default=1.0, gt=0, description="Inverse regularisation strength.")
    class_weight: Literal["balanced"] | None = Field(
        default=None, description="`balanced` weighs classes inversely to their frequency."
    )
    max_iter: int = Field(default=200, ge=10, le=10000, description="Solver iterations.")


class BoostingParams(SplitParams):
    """Histogram gradient boosting (`tabular-classifier` v2, `tabular-regressor` v2)."""

    learning_rate: float = Field(default=0.1, gt=0, le=1, description="Shrinkage of each tree.")
    max_iter: int = Field(default=100, ge=1, le=2000, description="Boosting iterations (trees).")
    max_depth: int | None = Field(default=None, ge=1, description="Depth limit of each tree; null: none.")


class RidgeParams(SplitParams):
    """`tabular-regressor` v1."""

    alpha: float = Field(default=1.0, ge=0, description="L2 regularisation strength.")


def _random_split(
    frame: pd.DataFrame, target: str, params: SplitParams, *, stratify: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    try:
        train, holdout = train_test_split(
            frame,
            test_size=params.test_size,
            random_state=params.random_state,
            stratify=frame[target] if stratify else None,
        )
    except ValueError as error:
        # scikit-learn refuses a stratified split when a class has too few rows for both sides.
        raise NotEnoughData(
            f"cannot split {len(frame)} rows into training and a {params.test_size:.0%} holdout: {error}"
        ) from None
    return train, holdout


class TabularClassifierV1(PipelineTemplate[LogisticRegressionParams]):
    """Logistic regression on scaled numeric and one-hot categorical features; stratified holdout."""

    name = "tabular-classifier"
    version = "1"
    task = "classification"
    trusted_types = LINEAR_PIPELINE_TYPES
    params_model = LogisticRegressionParams

    def split(
        self, frame: pd.DataFrame, target: str, params: LogisticRegressionParams
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        return _random_split(frame, target, params, stratify=True)

    def build(self, params: LogisticRegressionParams, features: FeatureKinds) -> Pipeline:
        estimator = LogisticRegression(
            C=params.C,
            class_weight=params.class_weight,
            max_iter=params.max_iter,
            random_state=params.random_state,
        )
        return Pipeline([("preprocess", tabular_preprocessor(features, dense=False)), ("model", estimator)])


class TabularClassifierV2(PipelineTemplate[BoostingParams]):
    """Histogram gradient boosting on the same preprocessing; stratified holdout."""

    name = "tabular-classifier"
    version = "2"
    task = "classification"
    trusted_types = HIST_GRADIENT_BOOSTING_TYPES
    params_model = BoostingParams

    def split(
        self, frame: pd.DataFrame, target: str, params: BoostingParams
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        return _random_split(frame, target, params, stratify=True)

    def build(self, params: BoostingParams, features: FeatureKinds) -> Pipeline:
        estimator = HistGradientBoostingClassifier(
            learning_rate=params.learning_rate,
            max_iter=params.max_iter,
            max_depth=params.max_depth,
            random_state=params.random_state,
        )
        return Pipeline([("preprocess", tabular_preprocessor(features, dense=True)), ("model", estimator)])


class TabularRegressorV1(PipelineTemplate[RidgeParams]):
    """Ridge regression on scaled numeric and one-hot categorical features; random holdout."""

    name = "tabular-regressor"
    version = "1"
    task = "regression"
    trusted_types = LINEAR_PIPELINE_TYPES
    params_model = RidgeParams

    def split(
        self, frame: pd.DataFrame, target: str, params: RidgeParams
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        return _random_split(frame, target, params, stratify=False)

    def build(self, params: RidgeParams, features: FeatureKinds) -> Pipeline:
        estimator = Ridge(alpha=params.alpha, random_state=params.random_state)
        return Pipeline([("preprocess", tabular_preprocessor(features, dense=False)), ("model", estimator)])


class TabularRegressorV2(PipelineTemplate[BoostingParams]):
    """Histogram gradient boosting regression on the same preprocessing; random holdout."""

    name = "tabular-regressor"
    version = "2"
    task = "regression"
    trusted_types = HIST_GRADIENT_BOOSTING_TYPES
    params_model = BoostingParams

    def split(
        self, frame: pd.DataFrame, target: str, params: BoostingParams
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        return _random_split(frame, target, params, stratify=False)

    def build(self, params: BoostingParams, features: FeatureKinds) -> Pipeline:
        estimator = HistGradientBoostingRegressor(
            learning_rate=params.learning_rate,
            max_iter=params.max_iter,
            max_depth=params.max_depth,
            random_state=params.random_state,
        )
        return Pipeline([("preprocess", tabular_preprocessor(features, dense=True)), ("model", estimator)])
