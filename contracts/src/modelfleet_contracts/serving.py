"""What the serving data plane reports: predictions, and the labels that arrive later."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field, JsonValue

from .envelope import Contract, Event
from .specs import MODEL_NAME_PATTERN

Route = Literal["champion", "challenger", "shadow"]


class PredictionRecord(Contract):
    """One served (or mirrored) prediction."""

    request_id: str = Field(description="Request id; ground truth is joined on it.")
    version: str = Field(description="Model version that predicted.")
    route: Route = Field(description="Which route of the routing table answered.")
    features: dict[str, JsonValue] = Field(description="Input row.")
    prediction: JsonValue = Field(default=None, description="Output; empty when it failed.")
    latency_ms: float = Field(ge=0, description="Model latency for this row, in milliseconds.")
    error: str | None = Field(default=None, description="Error message when the prediction failed.")
    dataset_version: str | None = Field(default=None, description="Data version the model was trained on.")
    predicted_at: AwareDatetime = Field(description="When it was predicted.")


class PredictionLogged(Event):
    """A batch of one model's predictions (batched so logging never blocks a response)."""

    event_type: Literal["prediction.logged"] = "prediction.logged"
    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    predictions: list[PredictionRecord] = Field(min_length=1, description="The predictions.")


class GroundTruthObserved(Event):
    """The true outcome of an earlier prediction became known."""

    event_type: Literal["ground_truth.observed"] = "ground_truth.observed"
    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    request_id: str = Field(description="Request id of the prediction it labels.")
    label: JsonValue = Field(description="The true value.")
