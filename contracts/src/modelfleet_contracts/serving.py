"""What the serving data plane reports: predictions, and the labels that arrive later; and the one
join of the two (made by ingest, scored by the monitor)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field, JsonValue

from .envelope import Contract, Event
from .specs import MODEL_NAME_PATTERN

Route = Literal["champion", "challenger", "shadow"]
#: A W3C trace context `traceparent` (version 00): trace id, span id, flags, in lowercase hex.
TRACEPARENT_PATTERN = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


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
    traceparent: str | None = Field(
        default=None,
        pattern=TRACEPARENT_PATTERN,
        description=(
            "W3C traceparent of the request's span (its trace and span id) when the request was "
            "traced: what the flush of the log, drift and health reports link to."
        ),
    )


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


class LabeledPrediction(Contract):
    """One version's prediction of a request, joined with the request's label."""

    request_id: str = Field(description="Request id the prediction and the label were joined on.")
    version: str = Field(description="Model version that predicted.")
    route: Route = Field(description="Which route of the routing table answered (or mirrored) it.")
    prediction: JsonValue = Field(description="What the version predicted.")
    predicted_at: AwareDatetime = Field(description="When it was predicted.")
    label: JsonValue = Field(description="The true value.")
    observed_at: AwareDatetime = Field(description="When the label was observed (its event's time).")


class PredictionsLabeled(Event):
    """Predictions of one model joined with their labels: the fleet's one prediction-label join.

    Made by ingest from `PredictionLogged` and `GroundTruthObserved` in its durable state (however
    late the label), and published before the join is marked published there; its `event_id` is
    derived from the model and the joined requests, so a republish after a crash carries the same
    id. One entry per version that answered or mirrored a joined request.
    """

    event_type: Literal["predictions.labeled"] = "predictions.labeled"
    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    labeled: list[LabeledPrediction] = Field(min_length=1, description="The joined predictions.")
