"""Events, dependencies and a recording publisher shared by the deployer's handler-level tests."""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelfleet_common.idempotency import InMemoryIdempotencyStore
from modelfleet_common.policies import load_policies
from modelfleet_common.state import InMemoryKeyValueStore
from modelfleet_contracts import ApprovalGranted, ModelRegistered, ModelSpec, ModelSpecSubmitted
from modelfleet_contracts.envelope import Event
from modelfleet_contracts.rollout import approval_message
from modelfleet_deployer.approvals import ApproverKeys
from modelfleet_deployer.handlers import DeployerDeps

POLICY_DIR = Path(__file__).resolve().parents[3] / "policies"
POLICIES = load_policies(POLICY_DIR)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OFFICER = Ed25519PrivateKey.generate()
OFFICER_KEYS = ApproverKeys.from_lines(
    [f"risk-officer {base64.b64encode(OFFICER.public_key().public_bytes_raw()).decode()}"]
)
MODEL = "churn-se"
#: The topic prefix of the fleet the tests' deployer runs in.
TOPIC_PREFIX = "fleet-a."


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
        topic_prefix=TOPIC_PREFIX,
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


def signed_approval(
    key: Ed25519PrivateKey,
    model: str,
    version: str,
    *,
    approver: str,
    digest: str,
    topic_prefix: str,
    expires_at: datetime,
    nonce: str,
) -> ApprovalGranted:
    """An approval signed as `modelfleet approve` signs it, with every bound field chosen by the test."""
    message = approval_message(model, version, digest, topic_prefix, expires_at, nonce)
    return ApprovalGranted(
        producer=f"cli:{approver}",
        model=model,
        version=version,
        approver=approver,
        signature=base64.b64encode(key.sign(message)).decode(),
        digest=digest,
        topic_prefix=topic_prefix,
        expires_at=expires_at,
        nonce=nonce,
    )


def approval(
    version: str,
    approver: str = "risk-officer",
    key: Ed25519PrivateKey = OFFICER,
    *,
    digest: str = "a" * 64,
    topic_prefix: str = TOPIC_PREFIX,
    expires_at: datetime = NOW + timedelta(hours=24),
    nonce: str | None = None,
) -> ApprovalGranted:
    """A valid approval of `version` (registered with digest a…a) for this fleet, unless told otherwise."""
    return signed_approval(
        key,
        MODEL,
        version,
        approver=approver,
        digest=digest,
        topic_prefix=topic_prefix,
        expires_at=expires_at,
        nonce=nonce or f"nonce-{version}-{next(_nonces)}",
    )


_nonces = itertools.count()
