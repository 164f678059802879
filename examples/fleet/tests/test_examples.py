"""The example fleet is something a user can apply as is: valid documents, data that matches
them, and enough rows behind every model to train and evaluate it."""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template
from types import ModuleType
from typing import Any

import pandas as pd
import pytest
import yaml

from modelfleet_contracts.data import ColumnSpec, DatasetSpec
from modelfleet_contracts.specs import ModelFleet, ModelSpec

FLEET_DIR = Path(__file__).resolve().parents[1]
MIN_ROWS_PER_MODEL = 600
MIN_ROWS_PER_CLASS = 60
MIN_MODELS = 20

# What the trainer's templates accept (services/trainer); a typo here would only fail at training.
TEMPLATE_HYPERPARAMETERS = {
    ("tabular-classifier", "1"): {"C", "class_weight", "max_iter", "test_size", "random_state"},
    ("tabular-classifier", "2"): {"learning_rate", "max_iter", "max_depth", "test_size", "random_state"},
    ("tabular-regressor", "1"): {"alpha", "test_size", "random_state"},
    ("tabular-regressor", "2"): {"learning_rate", "max_iter", "max_depth", "test_size", "random_state"},
    ("time-series-forecaster", "1"): {"time_column", "seasonalities", "alpha", "holdout_fraction"},
}


def _load_module(path: Path) -> ModuleType:
    name = "fleet_examples_" + path.parent.name.replace("-", "_") + "_" + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Document:
    """One YAML document of the example fleet and the file it came from."""

    path: Path
    index: int
    body: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.path.relative_to(FLEET_DIR)}#{self.index}"


def _documents() -> list[Document]:
    # The same selection as `modelfleet apply examples/fleet/`: every *.yaml / *.yml, recursively.
    paths = sorted([*FLEET_DIR.rglob("*.yaml"), *FLEET_DIR.rglob("*.yml")])
    return [
        Document(path, index, body)
        for path in paths
        for index, body in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        if body is not None
    ]


def expand(fleet: ModelFleet) -> list[ModelSpec]:
    """One ModelSpec per combination of the matrix, `${axis}` replaced as `string.Template` does."""
    axes = list(fleet.spec.matrix)
    template = json.dumps(fleet.spec.template)
    return [
        ModelSpec.model_validate(
            json.loads(Template(template).substitute(dict(zip(axes, combination, strict=True))))
        )
        for combination in itertools.product(*(fleet.spec.matrix[axis] for axis in axes))
    ]


DOCUMENTS = _documents()
DATASETS = {
    document.body["metadata"]["name"]: (document.path, DatasetSpec.model_validate(document.body))
    for document in DOCUMENTS
    if document.body.get("kind") == "Dataset"
}


def _models() -> list[ModelSpec]:
    models: list[ModelSpec] = []
    for document in DOCUMENTS:
        if document.body.get("kind") == "ModelSpec":
            models.append(ModelSpec.model_validate(document.body))
        elif document.body.get("kind") == "ModelFleet":
            models.extend(expand(ModelFleet.model_validate(document.body)))
    return models


MODELS = _models()


@functools.cache
def _read_dataset(name: str) -> pd.DataFrame:
    yaml_path, dataset = DATASETS[name]
    assert dataset.spec.source is not None, f"dataset {name} has no source to apply"
    # String columns are read as strings, whatever their values look like.
    strings = {column.name: "str" for column in dataset.spec.columns if column.type == "string"}
    return pd.read_csv(yaml_path.parent / dataset.spec.source, dtype=strings, keep_default_na=False)


def _column_problems(column: ColumnSpec, values: pd.Series) -> list[str]:
    missing = values.isna() | (values.astype(str) == "")
    present = values[~missing]
    problems = []
    if missing.any() and not column.nullable:
        problems.append(f"{column.name}: {missing.sum()} empty values")
    if column.type == "int" and not pd.api.types.is_integer_dtype(present):
        problems.append(f"{column.name}: not integers ({present.dtype})")
    elif column.type == "float" and not pd.api.types.is_numeric_dtype(present):
        problems.append(f"{column.name}: not numbers ({present.dtype})")
    elif column.type == "timestamp":
        parsed = pd.to_datetime(present, format="ISO8601", errors="coerce")
        if parsed.isna().any():
            problems.append(f"{column.name}: values that are no ISO 8601 timestamps")
    elif column.type == "bool" and not set(present.astype(str).str.lower()) <= {"true", "false"}:
        problems.append(f"{column.name}: values that are not true/false")
    if column.min is not None and present.min() < column.min:
        problems.append(f"{column.name}: {present.min()} below min {column.min}")
    if column.max is not None and present.max() > column.max:
        problems.append(f"{column.name}: {present.max()} above max {column.max}")
    if column.categories is not None:
        unknown = set(present) - set(column.categories)
        if unknown:
            problems.append(f"{column.name}: undeclared categories {sorted(unknown)}")
    return problems


def _slice(model: ModelSpec) -> pd.DataFrame:
    frame = _read_dataset(model.spec.dataset.name)
    for column, value in model.spec.dataset.where.items():
        frame = frame[frame[column].astype(str) == str(value)]
    return frame


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda document: document.label)
def test_every_document_validates_against_the_contract_of_its_kind(document: Document) -> None:
    contracts = {"Dataset": DatasetSpec, "ModelSpec": ModelSpec, "ModelFleet": ModelFleet}
    kind = document.body.get("kind")
    assert kind in contracts, f"{document.label}: unknown kind {kind!r}"
    validated = contracts[kind].model_validate(document.body)
    if isinstance(validated, ModelFleet):
        assert expand(validated), f"{document.label}: the matrix expands to no model"


def test_every_model_name_in_the_examples_is_unique() -> None:
    names = [model.metadata.name for model in MODELS]
    assert len(names) == len(set(names)), sorted({name for name in names if names.count(name) > 1})


def test_the_examples_add_up_to_a_fleet_of_at_least_twenty_models() -> None:
    assert len(MODELS) >= MIN_MODELS


@pytest.mark.parametrize("path", sorted(FLEET_DIR.glob("*/generate.py")), ids=lambda p: p.parent.name)
def test_every_generator_reproduces_its_committed_csv_byte_for_byte(path: Path, tmp_path: Path) -> None:
    generator = _load_module(path)
    regenerated = tmp_path / "regenerated.csv"
    generator.main(regenerated)
    assert regenerated.read_bytes() == Path(generator.OUTPUT).read_bytes(), (
        f"{path.parent.name}: the committed CSV is stale; run examples/fleet/generate_all.py"
    )


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_csv_satisfies_its_dataset_document(name: str) -> None:
    _, dataset = DATASETS[name]
    frame = _read_dataset(name)
    declared = [column.name for column in dataset.spec.columns]
    assert list(frame.columns) == declared
    problems = [
        problem for column in dataset.spec.columns for problem in _column_problems(column, frame[column.name])
    ]
    assert problems == []


def test_the_column_check_catches_a_value_outside_the_declared_range() -> None:
    column = ColumnSpec(name="rpm", type="int", min=0, max=4000)
    assert _column_problems(column, pd.Series([1480, 4100])) == ["rpm: 4100 above max 4000.0"]


def test_the_column_check_catches_an_undeclared_category() -> None:
    column = ColumnSpec(name="market", type="string", categories=["se", "no"])
    assert _column_problems(column, pd.Series(["se", "dk"])) == ["market: undeclared categories ['dk']"]


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.metadata.name)
def test_every_model_uses_columns_its_dataset_declares(model: ModelSpec) -> None:
    assert model.spec.dataset.name in DATASETS, f"no Dataset document named {model.spec.dataset.name}"
    _, dataset = DATASETS[model.spec.dataset.name]
    columns = {column.name: column for column in dataset.spec.columns}
    used = [*model.spec.features, model.spec.target, *model.spec.cohort_columns, *model.spec.dataset.where]
    assert [name for name in used if name not in columns] == []
    assert model.spec.target not in model.spec.features
    for column, value in model.spec.dataset.where.items():
        categories = columns[column].categories
        assert categories is None or value in categories, f"where {column}={value!r} matches no category"


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.metadata.name)
def test_every_model_asks_its_template_only_for_hyperparameters_it_accepts(model: ModelSpec) -> None:
    pipeline = (model.spec.pipeline.template, model.spec.pipeline.version)
    assert pipeline in TEMPLATE_HYPERPARAMETERS, f"unknown template {pipeline}"
    assert set(model.spec.hyperparameters) <= TEMPLATE_HYPERPARAMETERS[pipeline]
    if model.spec.pipeline.template == "time-series-forecaster":
        _, dataset = DATASETS[model.spec.dataset.name]
        assert model.spec.hyperparameters["time_column"] == dataset.spec.time_column


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.metadata.name)
def test_every_model_slice_has_enough_rows_to_train_and_evaluate(model: ModelSpec) -> None:
    rows = _slice(model)
    # A small bundled data set (569 biopsies) is used whole; generated slices need 600 rows.
    whole = _read_dataset(model.spec.dataset.name)
    assert len(rows) >= min(MIN_ROWS_PER_MODEL, len(whole))
    if model.spec.pipeline.template == "tabular-classifier":
        counts = rows[model.spec.target].value_counts()
        assert set(counts.index) == {0, 1}
        assert counts.min() >= MIN_ROWS_PER_CLASS
