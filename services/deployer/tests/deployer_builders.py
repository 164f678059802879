"""Events, dependencies and a recording publisher shared by the deployer's handler-level tests."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelfleet_common.idempotency import InMemoryIdempotencyStore
from modelfleet_common.policies import load_policies
from modelfleet_common.state import InMemoryKeyValueStore
from modelfleet_contracts import ApprovalGranted, ModelRegistered, ModelSpec, ModelSpecSubmitted
from modelfleet_contracts.envelope import Event
from modelfleet_deployer.approvals import ApproverKeys, approval_message
from modelfleet_deployer.handlers import DeployerDeps

POLICY_DIR = Path(__file__).resolve().parents[3] / "policies"
POLICIES = load_policies(POLICY_DIR)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OFFICER = Ed25519PrivateKey.generate()
OFFICER_KEYS = ApproverKeys.from_lines(
    [f"risk-officer {base64.b64encode(OFFICER.public_key().public_bytes_raw()).decode()}"]
)
MODEL = "churn-se"


@dataclass
class Publisher:
    """Keeps what is published, like the topics would; can be told to fail, like a broker that is down."""

    events: list[Event] = field(default_factory=list)
    failing: bool = False

    async def __call__(self, event: Event) -> None:
        if self.failing:
            raise ConnectionError("broker unreachable")
        self.events.append(event)

    def of(self, kind: type[Event]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


def in_memory_deps(keys: ApproverKeys = OFFICER_KEYS) -> DeployerDeps:
    return DeployerDeps(
        policies=POLICIES,
        approver_keys=keys,
        state=InMemoryKeyValueStore(),
        handled=InMemoryIdempotencyStore(),
        publish=Publisher(),
        clock=lambda: NOW,
    )


def published(deps: DeployerDeps) -> Publisher:
    assert isinstance(deps.publish, Publisher)
    return deps.publish


def spec(risk_class: str, model: str = MODEL, **rollout: object) -> ModelSpecSubmitted:
    document = ModelSpec.model_validate(
        {
            "metadata": {"name": model, "owner": "churn@example.com", "risk_class": risk_class},
            "spec": {
                "dataset": {"name": "customers"},
                "features": ["tenure"],
                "target": "churned",
                "pipeline": {"template": "tabular-classifier", "version": "1"},
                "rollout": rollout,
            },
        }
    )
    return ModelSpecSubmitted(producer="cli", model=model, revision=f"rev-{risk_class}", spec=document)


def registered(version: str, lineage: dict[str, str] | None = None) -> ModelRegistered:
    return ModelRegistered(
        producer="registry",
        model=MODEL,
        version=version,
        run_id=f"run-{version}",
        model_uri=f"models:/{MODEL}/{version}",
        digest="a" * 64,
        signature="c2lnbmF0dXJl",
        signing_key_id="0123456789abcdef",
        passed_evaluation=True,
        lineage=lineage or {},
    )


def approval(
    version: str, approver: str = "risk-officer", key: Ed25519PrivateKey = OFFICER
) -> ApprovalGranted:
    signature = base64.b64encode(key.sign(approval_message(MODEL, version))).decode()
    return ApprovalGranted(
        producer=f"cli:{approver}", model=MODEL, version=version, approver=approver, signature=signature
    )
