"""What a pipeline template is: a named, versioned, parameterised recipe for a scikit-learn pipeline.

A template fixes everything about a model except its data and its hyperparameters: the task it
learns, how the holdout is split off, the preprocessing and estimator, and the types skops must
trust to load the fitted pipeline. Its version is bumped whenever any of that changes, so a spec
that pins `{template, version}` always gets the same recipe.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError
from pydantic_core import ErrorDetails
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelfleet_contracts.training import Task

from ..domain import InvalidHyperparameters


class TemplateParams(BaseModel):
    """Hyperparameters of a template: validated, immutable, no unknown names."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitParams(TemplateParams):
    """How a random holdout is split off (tabular templates)."""

    test_size: float = Field(default=0.2, ge=0.05, le=0.5, description="Share of rows held out.")
    random_state: int = Field(default=0, description="Seed of the split and the estimator.")


@dataclass(frozen=True)
class FeatureKinds:
    """Feature columns grouped by how they are encoded."""

    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)


P = TypeVar("P", bound=TemplateParams)


class PipelineTemplate(ABC, Generic[P]):
    """A versioned recipe: hyperparameters in, an unfitted scikit-learn pipeline and a split out."""

    name: ClassVar[str]
    version: ClassVar[str]
    task: ClassVar[Task]
    #: Fully-qualified names of the types skops must trust to load the fitted pipeline: one of the
    #: exact tuples of `modelfleet_common.skops_types`, whose union is all the loaders accept.
    trusted_types: ClassVar[tuple[str, ...]]
    params_model: type[P]

    @property
    def ref(self) -> str:
        return f"{self.name} v{self.version}"

    def parse_params(self, raw: Mapping[str, JsonValue]) -> P:
        """Validated hyperparameters; raises `InvalidHyperparameters` naming the parameter and range."""
        try:
            return self.params_model.model_validate(dict(raw))
        except ValidationError as error:
            problems = "; ".join(self._describe(detail, raw) for detail in error.errors())
            raise InvalidHyperparameters(f"{self.ref}: {problems}") from None

    def extra_columns(self, params: P) -> list[str]:
        """Columns besides features, target and cohorts that the template reads (e.g. time)."""
        return []

    def check_features(self, params: P, features: Sequence[str]) -> None:
        """Raise `InvalidHyperparameters` if the hyperparameters do not fit the spec's features."""

    @abstractmethod
    def split(self, frame: pd.DataFrame, target: str, params: P) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(training rows, holdout rows) of `frame`."""

    @abstractmethod
    def build(self, params: P, features: FeatureKinds) -> Pipeline:
        """The unfitted pipeline for these feature columns."""

    def _describe(self, detail: ErrorDetails, raw: Mapping[str, JsonValue]) -> str:
        location = detail["loc"]
        name = str(location[0]) if location else "?"
        path = ".".join(str(part) for part in location)
        if detail["type"] == "extra_forbidden":
            known = ", ".join(sorted(self.params_model.model_fields))
            return f"unknown hyperparameter {name!r} = {raw.get(name)!r}; {self.ref} takes: {known}"
        allowed = allowed_values(self.params_model, name)
        if detail["type"] == "missing":
            return f"hyperparameter {name!r} is required ({allowed})"
        return f"hyperparameter {path!r} = {detail['input']!r} is invalid: {detail['msg']} ({allowed})"


def allowed_values(params_model: type[BaseModel], name: str) -> str:
    """`allowed: <type and range>[; default <value>]` of one hyperparameter, from its JSON schema."""
    schema = params_model.model_json_schema()["properties"].get(name, {})
    text = f"allowed: {_describe_schema(schema)}"
    if "default" in schema:
        text += f"; default {json.dumps(schema['default'])}"
    return text


def _describe_schema(schema: Mapping[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_describe_schema(option) for option in schema["anyOf"])
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return " | ".join(repr(value) for value in schema["enum"])
    kind = str(schema.get("type", "any"))
    if kind == "null":
        return "null"
    if kind == "object" and "additionalProperties" in schema:
        return f"mapping of column to {_describe_schema(schema['additionalProperties'])}"
    bounds = []
    if "minimum" in schema:
        bounds.append(f"≥ {schema['minimum']}")
    if "exclusiveMinimum" in schema:
        bounds.append(f"> {schema['exclusiveMinimum']}")
    if "maximum" in schema:
        bounds.append(f"≤ {schema['maximum']}")
    if "exclusiveMaximum" in schema:
        bounds.append(f"< {schema['exclusiveMaximum']}")
    if "minLength" in schema:
        bounds.append(f"at least {schema['minLength']} character(s)")
    return f"{kind} {' and '.join(bounds)}".strip()


def numeric_encoder() -> Pipeline:
    """Median imputation then standard scaling: nullable numeric columns do not break the fit."""
    return Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])


def categorical_encoder(*, dense: bool) -> OneHotEncoder:
    """One-hot encoding that ignores categories unseen in training (missing values are a category)."""
    return OneHotEncoder(handle_unknown="ignore", sparse_output=not dense)


def tabular_preprocessor(features: FeatureKinds, *, dense: bool) -> ColumnTransformer:
    """Numeric columns imputed and scaled, string/bool columns one-hot encoded."""
    transformers: list[tuple[str, Any, list[str]]] = []
    if features.numeric:
        transformers.append(("numeric", numeric_encoder(), features.numeric))
    if features.categorical:
        transformers.append(("categorical", categorical_encoder(dense=dense), features.categorical))
    # Dense output when asked: histogram gradient boosting does not take sparse input.
    return ColumnTransformer(transformers, sparse_threshold=0.0 if dense else 0.3)
