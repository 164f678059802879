"""Rollout: routing tables, approvals and rollback requests."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

from pydantic import Field

from .envelope import Contract, Event
from .specs import MODEL_NAME_PATTERN, RiskClass

Stage = Literal["candidate", "shadow", "awaiting_approval", "canary", "promoted", "rolled_back", "retired"]


class RouteTarget(Contract):
    """One model version that serving may load, with what is needed to verify it first."""

    version: str = Field(description="Registry version.")
    model_uri: str = Field(description="MLflow URI of the artifact.")
    digest: str = Field(description="sha256 hex digest the artifact must have.")
    signature: str = Field(
        description=(
            "Base64 Ed25519 signature by the registry of (model, version, digest, topic prefix): "
            "serving verifies it against the model it routes, this version and digest and its own "
            "topic prefix, and refuses any mismatch."
        )
    )
    signing_key_id: str = Field(description="Id of the signing key.")
    dataset_version: str | None = Field(
        default=None,
        description="Content hash of the dataset version it was trained on; stamped on its prediction logs.",
    )


class DeploymentChanged(Event):
    """The routing table of a model, and the deployer's durable rollout state behind it.

    Compacted by model: the latest one is what serving does (`stage` through `shadows`), and it is
    also enough for the deployer to rebuild its memory of the model after losing its local state
    (`candidate` through `passing_versions`; serving ignores those).
    """

    event_type: Literal["deployment.changed"] = "deployment.changed"
    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    revision: int = Field(
        ge=0,
        description=(
            "1 for a model's first table, then +1 with every change of this model's table or of "
            "the deployer's durable rollout state. A consumer accepts the first table it sees for a "
            "model (the compacted topic may hold only the latest), then only its revision + 1."
        ),
    )
    stage: Stage = Field(description="Rollout stage of the challenger (or of the model).")
    champion: RouteTarget | None = Field(default=None, description="Version answering by default.")
    challenger: RouteTarget | None = Field(default=None, description="Canary version, if any.")
    challenger_weight: float = Field(
        default=0.0, ge=0, le=1, description="Share of request keys routed to the challenger."
    )
    shadows: list[RouteTarget] = Field(
        default_factory=list, description="Versions that get a mirrored copy and never answer."
    )
    reason: str = Field(default="", description="Why the table changed.")
    candidate: RouteTarget | None = Field(
        default=None,
        description=(
            "Version in rollout (shadow, awaiting approval or canary), even while it answers no "
            "requests; `challenger` names it only while it takes canary traffic. Empty when none "
            "is in rollout, and in events from deployers that predate this field."
        ),
    )
    canary_step_index: int = Field(
        default=0,
        ge=0,
        description=(
            "0-based index into the model's canary steps of the step `candidate` is in (stage "
            "`canary`); 0 otherwise."
        ),
    )
    pending_approval: str | None = Field(
        default=None,
        description="Version waiting for a signed approval (stage `awaiting_approval`), if any.",
    )
    last_known_good: RouteTarget | None = Field(
        default=None,
        description=(
            "Previous champion: where a rollback without a named version goes once no candidate is "
            "in rollout."
        ),
    )
    passing_versions: list[RouteTarget] = Field(
        default_factory=list,
        description=(
            "Every version of the model that passed evaluation, oldest first: the versions a "
            "person may roll back to by name."
        ),
    )
    risk_class: RiskClass | None = Field(
        default=None,
        description=(
            "Risk class of the model as the deployer's policy for it says, so consumers (serving's "
            "request metrics) need not know the spec. Empty in events from deployers that predate it."
        ),
    )
    stage_since: datetime | None = Field(
        default=None,
        description=(
            "When the model entered `stage` with its current `candidate` (the age of a shadow or "
            "canary). Empty in events from deployers that predate it."
        ),
    )


class ApprovalRequested(Event):
    """A high-risk version waits for a listed approver before taking live traffic."""

    event_type: Literal["approval.requested"] = "approval.requested"
    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    version: str = Field(description="Version awaiting approval.")
    risk_class: str = Field(description="Risk class that requires the approval.")
    approvers: list[str] = Field(description="Who may approve, per policy.")
    evidence: str = Field(default="", description="Evaluation and shadow results to review.")
    digest: str | None = Field(
        default=None,
        description=(
            "sha256 digest of the waiting version's artifact: what an approval must sign. Empty in "
            "requests from deployers that predate it."
        ),
    )


class ApprovalGranted(Event):
    """An approver signed off a version."""

    event_type: Literal["approval.granted"] = "approval.granted"
    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    version: str = Field(description="Approved version.")
    approver: str = Field(description="Approver identity, as listed in the policy.")
    signature: str = Field(
        description=(
            "Base64 Ed25519 signature by the approver of `approval_message` over model, version, "
            "digest, topic prefix, expiry and nonce."
        )
    )
    comment: str = Field(default="", description="Approver's note.")
    digest: str | None = Field(
        default=None,
        description="sha256 digest of the approved artifact; the deployer requires it.",
    )
    topic_prefix: str | None = Field(
        default=None,
        description="Topic prefix of the fleet the approval is for; the deployer requires its own.",
    )
    expires_at: datetime | None = Field(
        default=None, description="When the approval stops being valid; the deployer requires it."
    )
    nonce: str | None = Field(
        default=None,
        description="Random value making the approval single-use; the deployer refuses one seen before.",
    )


def approval_message(
    model: str, version: str, digest: str, topic_prefix: str, expires_at: datetime, nonce: str
) -> bytes:
    """The bytes an approver signs: exactly one artifact of one version, in one fleet, until a time, once."""
    fields = {
        "approval": "modelfleet/v1",
        "model": model,
        "version": version,
        "digest": digest,
        "topic_prefix": topic_prefix,
        "expires_at": expires_at.isoformat(),
        "nonce": nonce,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


class ApprovalRejected(Event):
    """An approval was refused by a person, or an approval was invalid (unknown approver, bad signature)."""

    event_type: Literal["approval.rejected"] = "approval.rejected"
    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    version: str = Field(description="Version concerned.")
    rejected_by: str = Field(description="Person who refused, or the service that found it invalid.")
    reason: str = Field(description="Why.")


class RollbackRequested(Event):
    """A person asks to roll a model back (to a given version, or the last known good one)."""

    event_type: Literal["model.rollback.requested"] = "model.rollback.requested"
    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    to_version: str | None = Field(default=None, description="Target version; empty = last known good.")
    reason: str = Field(min_length=1, description="Why.")
