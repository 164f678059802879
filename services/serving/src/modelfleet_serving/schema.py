"""A model's input schema, and request rows checked against it before the model runs: no I/O here
but reading the verified MLmodel file.

The schema comes from the MLflow model signature the trainer writes into the model's own files
(`signature.inputs` of `MLmodel`: each feature's name and type). Those files are covered by the
registry's signed digest, so the schema is as trustworthy as the model. A model without a
signature falls back to the estimator's `feature_names_in_` (names, any scalar type).

A row must hold exactly the model's features: a missing one, an extra one, or a value of the wrong
type (`"abc"` for a double) is answered 422 with the row, the feature and the expected type, and the
model never sees it, so no library message ("Cannot use median strategy with non-numeric data")
reaches the caller. `null` is accepted for every feature: the fleet's pipelines impute missing values.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

logger = logging.getLogger("modelfleet.serving")

Kind = Literal["number", "integer", "string", "boolean", "any"]

#: MLflow column types (mlflow.types.DataType) → what a JSON value must be.
MLFLOW_KINDS: dict[str, Kind] = {
    "double": "number",
    "float": "number",
    "long": "integer",
    "integer": "integer",
    "string": "string",
    "boolean": "boolean",
    "datetime": "string",
}

#: How a kind is named in a 422.
EXPECTED: dict[Kind, str] = {
    "number": "a number",
    "integer": "an integer",
    "string": "a string",
    "boolean": "true or false",
    "any": "a number, string, boolean or null",
}


class InvalidInputs(Exception):
    """The request's rows cannot be given to the model; the message names the problem."""


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Kind
    #: The type as the signature names it (`double`, `long`, ...), for messages.
    declared: str


@dataclass(frozen=True)
class InputSchema:
    """The features a model takes, in the order it was fitted on."""

    features: tuple[Feature, ...]
    source: Literal["signature", "estimator"]

    @property
    def columns(self) -> list[str]:
        return [feature.name for feature in self.features]

    def describe(self) -> str:
        return ", ".join(f"{f.name} ({f.declared})" for f in self.features)

    def check(self, rows: list[dict[str, Any]]) -> None:
        """`InvalidInputs` naming the first problem of `rows`: missing, extra, or mistyped features."""
        names = {feature.name for feature in self.features}
        for index, row in enumerate(rows):
            if row.keys() != names:
                missing = [f.name for f in self.features if f.name not in row]
                if missing:
                    raise InvalidInputs(
                        f"inputs[{index}] lacks features {missing}; the model takes {self.describe()}"
                    )
                extra = sorted(key for key in row if key not in names)
                raise InvalidInputs(
                    f"inputs[{index}] has features the model does not take: {extra}; the model takes "
                    f"{self.describe()} (send other columns to log under 'context')"
                )
            for feature in self.features:
                value = row[feature.name]
                if value is not None and not _fits(feature.kind, value):
                    raise InvalidInputs(
                        f"inputs[{index}][{feature.name!r}] must be {EXPECTED[feature.kind]} "
                        f"(feature {feature.name!r} is {feature.declared}), not {_shown(value)}"
                    )


def _fits(kind: Kind, value: object) -> bool:
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    return True


def _shown(value: object) -> str:
    if isinstance(value, str):
        shown = json.dumps(value[:40] + ("…" if len(value) > 40 else ""))
        return f"the string {shown}"
    return f"{type(value).__name__} {json.dumps(value)}"


def read_input_schema(directory: Path, estimator: Any) -> InputSchema | None:
    """The schema of a verified model directory: its signature, else the estimator's feature names.

    None when neither is known (a model fitted on a bare array): then only the number of
    features is checked, by the model.
    """
    try:
        mlmodel = yaml.safe_load((directory / "MLmodel").read_text()) or {}
        inputs = json.loads(((mlmodel.get("signature") or {}).get("inputs")) or "null")
        if (
            isinstance(inputs, list)
            and inputs
            and all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in inputs)
        ):
            features = tuple(
                Feature(
                    name=column["name"],
                    kind=MLFLOW_KINDS.get(str(column.get("type")), "any"),
                    declared=str(column.get("type", "any")),
                )
                for column in inputs
            )
            return InputSchema(features=features, source="signature")
    except (OSError, yaml.YAMLError, ValueError, AttributeError) as error:
        logger.warning("model signature unreadable; using the estimator's feature names: %s", error)
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return None
    features = tuple(Feature(name=str(name), kind="any", declared="any scalar") for name in names)
    return InputSchema(features=features, source="estimator")
