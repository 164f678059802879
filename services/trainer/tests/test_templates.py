"""Templates fit small data, report their metrics, and refuse bad specs with actionable messages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import skops.io

from modelfleet_common.model_files import load_skops_model
from modelfleet_common.skops_types import FLEET_TRUSTED_TYPES
from modelfleet_contracts import ModelSpec
from modelfleet_trainer.datasets import DatasetCache
from modelfleet_trainer.domain import (
    InvalidHyperparameters,
    MissingColumns,
    NotEnoughData,
    UnknownTemplate,
    UnreadableDataset,
    UnsupportedColumnType,
)
from modelfleet_trainer.fitting import FittedModel, fit_template
from modelfleet_trainer.templates import TEMPLATES, get_template

FORECAST = {
    "template": "time-series-forecaster",
    "target": "demand",
    "features": ["day_of_week", "load", "market"],
    "hyperparameters": {"time_column": "when", "seasonalities": {"day_of_week": 7}},
}
#: A spec for each template (keyword arguments of `make_spec`) and the metrics it must report.
CASES: dict[tuple[str, str], tuple[dict[str, Any], set[str]]] = {
    ("tabular-classifier", "1"): ({}, {"roc_auc", "accuracy", "log_loss"}),
    ("tabular-classifier", "2"): ({"hyperparameters": {"max_iter": 20}}, {"roc_auc", "accuracy", "log_loss"}),
    ("tabular-regressor", "1"): ({"target": "fuel"}, {"r2", "rmse", "mae"}),
    ("tabular-regressor", "2"): (
        {"target": "fuel", "hyperparameters": {"max_iter": 20}},
        {"r2", "rmse", "mae"},
    ),
    ("time-series-forecaster", "1"): (FORECAST, {"smape", "mae", "rmse"}),
}


def fit(spec: ModelSpec, frame: pd.DataFrame) -> FittedModel:
    template = get_template(spec.spec.pipeline.template, spec.spec.pipeline.version)
    return fit_template(template, template.parse_params(spec.spec.hyperparameters), frame, spec.spec)


def case_spec(make_spec: Callable[..., ModelSpec], key: tuple[str, str]) -> ModelSpec:
    overrides = {"template": key[0], **CASES[key][0], "version": key[1]}
    return make_spec(**overrides)  # type: ignore[no-any-return]


def test_every_registered_template_has_a_test_case() -> None:
    assert set(TEMPLATES) == set(CASES)


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda key: f"{key[0]}-v{key[1]}")
def test_each_template_fits_small_data_and_reports_its_metrics(
    key: tuple[str, str], make_spec: Callable[..., ModelSpec], frame: pd.DataFrame
) -> None:
    fitted = fit(case_spec(make_spec, key), frame)

    assert set(fitted.metrics) == CASES[key][1]
    assert all(np.isfinite(value) for value in fitted.metrics.values())
    quality = {"roc_auc": 0.75, "r2": 0.5, "smape": None}
    for metric, bound in quality.items():
        if metric in fitted.metrics and bound is not None:
            assert fitted.metrics[metric] > bound, fitted.metrics
    if "smape" in fitted.metrics:
        assert fitted.metrics["smape"] < 5, fitted.metrics
    assert fitted.train_rows + len(fitted.holdout) == len(frame)


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda key: f"{key[0]}-v{key[1]}")
def test_a_template_trusts_exactly_the_types_its_fitted_pipeline_needs_and_the_loader_loads_it(
    key: tuple[str, str], make_spec: Callable[..., ModelSpec], frame: pd.DataFrame, tmp_path: Path
) -> None:
    fitted = fit(case_spec(make_spec, key), frame)
    template = TEMPLATES[key]
    needed = skops.io.get_untrusted_types(data=skops.io.dumps(fitted.pipeline))

    assert set(needed) <= set(template.trusted_types), "the template's list misses types skops needs"
    assert set(template.trusted_types) <= set(needed), "the template trusts types its pipeline does not hold"
    directory = tmp_path / "model"
    mlflow.sklearn.save_model(  # as `tracking.py` logs it
        fitted.pipeline,
        str(directory),
        serialization_format="skops",
        skops_trusted_types=list(template.trusted_types),
        pip_requirements=["scikit-learn"],
    )
    loaded = load_skops_model(directory)
    np.testing.assert_array_equal(loaded.predict(fitted.holdout), fitted.pipeline.predict(fitted.holdout))


def test_the_fleet_allowlist_is_exactly_the_union_of_the_templates_lists() -> None:
    assert {name for template in TEMPLATES.values() for name in template.trusted_types} == FLEET_TRUSTED_TYPES


def test_a_multiclass_target_reports_one_vs_rest_auc(
    make_spec: Callable[..., ModelSpec], frame: pd.DataFrame
) -> None:
    fitted = fit(make_spec(target="condition"), frame)
    assert set(fitted.metrics) == {"roc_auc_ovr", "accuracy", "log_loss"}


def test_the_holdout_keeps_features_target_cohorts_and_time(
    make_spec: Callable[..., ModelSpec], frame: pd.DataFrame
) -> None:
    spec = make_spec(**FORECAST, cohort_columns=["running"])
    fitted = fit(spec, frame)
    assert list(fitted.holdout.columns) == ["day_of_week", "load", "market", "demand", "running", "when"]


def test_the_forecaster_holds_out_the_latest_rows(
    make_spec: Callable[..., ModelSpec], frame: pd.DataFrame
) -> None:
    shuffled = frame.sample(frac=1.0, random_state=1)
    fitted = fit(make_spec(**FORECAST), shuffled)
    assert len(fitted.holdout) == 24
    assert list(fitted.holdout["when"]) == list(frame["when"].iloc[-24:])


def test_a_bad_hyperparameter_names_the_parameter_its_value_and_the_allowed_range() -> None:
    template = get_template("tabular-classifier", "1")
    with pytest.raises(
        InvalidHyperparameters, match=r"'C' = -1 is invalid: .*allowed: number > 0; default 1\.0"
    ):
        template.parse_params({"C": -1})
    with pytest.raises(InvalidHyperparameters, match=r"'max_iter' = 5 is invalid.*≥ 10 and ≤ 10000"):
        template.parse_params({"max_iter": 5})
    with pytest.raises(InvalidHyperparameters, match=r"'max_depth' = 0 .*integer ≥ 1 or null; default null"):
        get_template("tabular-regressor", "2").parse_params({"max_depth": 0})


def test_an_unknown_hyperparameter_lists_the_ones_the_template_takes() -> None:
    with pytest.raises(
        InvalidHyperparameters,
        match=r"unknown hyperparameter 'alpha' = 2; tabular-classifier v1 takes: C, class_weight, max_iter",
    ):
        get_template("tabular-classifier", "1").parse_params({"alpha": 2})


def test_a_required_hyperparameter_must_be_given() -> None:
    with pytest.raises(InvalidHyperparameters, match=r"hyperparameter 'time_column' is required"):
        get_template("time-series-forecaster", "1").parse_params({})


def test_an_unknown_template_lists_the_known_ones() -> None:
    with pytest.raises(
        UnknownTemplate, match=r"no pipeline template 'tabular-classifier' version '9'; known templates: "
    ):
        get_template("tabular-classifier", "9")
    with pytest.raises(
        UnknownTemplate, match=r"tabular-classifier v1, tabular-classifier v2, tabular-regressor v1"
    ):
        get_template("gradient-magic", "1")


def test_missing_columns_are_named_with_the_available_ones(
    make_spec: Callable[..., ModelSpec], frame: pd.DataFrame
) -> None:
    spec = make_spec(features=["temperature", "vibration"], target="broke", where={"site": "x"})
    with pytest.raises(
        MissingColumns,
        match=r"features: \['vibration'\]; target: \['broke'\]; row filter: \['site'\]; "
        r"available columns: \['when'",
    ):
        fit(spec, frame)


def test_the_forecaster_needs_its_time_column(
    make_spec: Callable[..., ModelSpec], frame: pd.DataFrame
) -> None:
    spec = make_spec(**{**FORECAST, "hyperparameters": {"time_column": "timestamp"}})
    with pytest.raises(MissingColumns, match=r"template columns: \['timestamp'\]"):
        fit(spec, frame)


def test_a_seasonality_must_be_one_of_the_features(
    make_spec: Callable[..., ModelSpec], frame: pd.DataFrame
) -> None:
    spec = make_spec(
        **{**FORECAST, "hyperparameters": {"time_column": "when", "seasonalities": {"day_of_year": 365}}}
    )
    with pytest.raises(
        InvalidHyperparameters, match=r"seasonalities name columns that are not features: \['day_of_year'\]"
    ):
        fit(spec, frame)


def test_the_row_filter_selects_the_rows_trained_on(
    make_spec: Callable[..., ModelSpec], frame: pd.DataFrame
) -> None:
    fitted = fit(make_spec(where={"market": "se"}), frame)
    assert fitted.train_rows + len(fitted.holdout) == (frame["market"] == "se").sum()
    assert set(fitted.holdout["market"]) == {"se"}


def test_a_row_filter_that_leaves_no_rows_is_not_enough_data(
    make_spec: Callable[..., ModelSpec], frame: pd.DataFrame
) -> None:
    with pytest.raises(
        NotEnoughData, match=r"row filter \{'market': 'fi'\} leaves no rows of the 120 .*'dk', 'no', 'se'"
    ):
        fit(make_spec(where={"market": "fi"}), frame)


def test_too_few_rows_are_not_enough_data(make_spec: Callable[..., ModelSpec], frame: pd.DataFrame) -> None:
    with pytest.raises(NotEnoughData, match=r"6 rows with a target value .* needs at least 10"):
        fit(make_spec(), frame.head(6))


def test_a_single_class_target_is_not_enough_data(
    make_spec: Callable[..., ModelSpec], frame: pd.DataFrame
) -> None:
    frame["failed"] = 1
    with pytest.raises(NotEnoughData, match=r"target 'failed' has 1 class\(es\)"):
        fit(make_spec(), frame)


def test_a_timestamp_feature_is_refused_with_a_hint(
    make_spec: Callable[..., ModelSpec], frame: pd.DataFrame
) -> None:
    with pytest.raises(UnsupportedColumnType, match=r"feature 'when' has type datetime64.*day_of_week"):
        fit(make_spec(features=["when", "load"]), frame)


def test_a_regression_target_must_be_numeric(
    make_spec: Callable[..., ModelSpec], frame: pd.DataFrame
) -> None:
    with pytest.raises(
        UnsupportedColumnType, match=r"target 'market' has type .*regression needs a numeric target"
    ):
        fit(make_spec(template="tabular-regressor", target="market"), frame)


def test_a_dataset_version_is_read_once_while_cached(tmp_path: Path, frame: pd.DataFrame) -> None:
    paths = []
    for name in ("a", "b", "c"):
        paths.append(tmp_path / f"{name}.parquet")
        frame.to_parquet(paths[-1])
    cache = DatasetCache(capacity=2)

    first = cache.read(str(paths[0]), label="a")
    assert cache.read(str(paths[0]), label="a") is first
    cache.read(str(paths[1]), label="b")
    cache.read(str(paths[2]), label="c")
    assert len(cache) == 2
    assert cache.read(str(paths[0]), label="a") is not first  # evicted, read again


def test_a_missing_or_corrupt_dataset_version_is_unreadable(tmp_path: Path) -> None:
    cache = DatasetCache(capacity=2)
    with pytest.raises(UnreadableDataset, match=r"dataset 'x' is not at '.*gone\.parquet'"):
        cache.read(str(tmp_path / "gone.parquet"), label="dataset 'x'")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(UnreadableDataset, match=r"is not readable Parquet"):
        cache.read(str(tmp_path / "bad.parquet"), label="dataset 'x'")
