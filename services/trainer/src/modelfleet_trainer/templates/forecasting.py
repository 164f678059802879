"""Time-series forecasting: periodic seasonal encodings, a chronological holdout, ridge regression."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import SplineTransformer

from modelfleet_common.skops_types import SPLINE_PIPELINE_TYPES

from ..domain import InvalidHyperparameters
from .base import (
    FeatureKinds,
    PipelineTemplate,
    TemplateParams,
    categorical_encoder,
    numeric_encoder,
)

#: Most knots a seasonal spline gets; a yearly season does not need one per day.
MAX_SEASONAL_KNOTS = 13


class ForecasterParams(TemplateParams):
    """`time-series-forecaster` v1."""

    time_column: str = Field(min_length=1, description="Column that orders the rows in time.")
    seasonalities: dict[str, Annotated[float, Field(ge=2)]] = Field(
        default_factory=dict,
        description="Seasonal feature column to its period, e.g. {day_of_week: 7, day_of_year: 365}.",
    )
    alpha: float = Field(default=1.0, ge=0, description="L2 regularisation strength.")
    holdout_fraction: float = Field(
        default=0.2, ge=0.05, le=0.5, description="Share of the latest rows held out."
    )


def seasonal_encoder(period: float) -> Pipeline:
    """Periodic cubic splines over [0, period]: the end of a season meets its start smoothly."""
    n_knots = min(max(round(period), 3), MAX_SEASONAL_KNOTS - 1) + 1
    knots = np.linspace(0.0, period, n_knots).reshape(-1, 1)
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("spline", SplineTransformer(knots=knots, degree=3, extrapolation="periodic")),
        ]
    )


class TimeSeriesForecasterV1(PipelineTemplate[ForecasterParams]):
    """Ridge on periodic seasonal splines, scaled numeric and one-hot categorical features."""

    name = "time-series-forecaster"
    version = "1"
    task = "forecasting"
    trusted_types = SPLINE_PIPELINE_TYPES
    params_model = ForecasterParams

    def extra_columns(self, params: ForecasterParams) -> list[str]:
        return [params.time_column]

    def check_features(self, params: ForecasterParams, features: Sequence[str]) -> None:
        unlisted = sorted(set(params.seasonalities) - set(features))
        if unlisted:
            raise InvalidHyperparameters(
                f"{self.ref}: seasonalities name columns that are not features: {unlisted}; "
                f"add them to `features` (features: {list(features)})"
            )

    def split(
        self, frame: pd.DataFrame, target: str, params: ForecasterParams
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        ordered = frame.sort_values(params.time_column, kind="stable")
        holdout_rows = max(1, math.ceil(len(ordered) * params.holdout_fraction))
        return ordered.iloc[:-holdout_rows], ordered.iloc[-holdout_rows:]

    def build(self, params: ForecasterParams, features: FeatureKinds) -> Pipeline:
        transformers: list[tuple[str, Any, list[str]]] = [
            (f"season_{column}", seasonal_encoder(period), [column])
            for column, period in sorted(params.seasonalities.items())
        ]
        numeric = [column for column in features.numeric if column not in params.seasonalities]
        if numeric:
            transformers.append(("numeric", numeric_encoder(), numeric))
        if features.categorical:
            transformers.append(("categorical", categorical_encoder(dense=False), features.categorical))
        estimator = Ridge(alpha=params.alpha)
        return Pipeline([("preprocess", ColumnTransformer(transformers)), ("model", estimator)])
