"""Settings of the deployer service."""

from pathlib import Path
from typing import Literal

from pydantic import Field

from modelfleet_common.settings import ServiceSettings


class DeployerSettings(ServiceSettings):
    """`FLEET_*` settings plus where the risk policies and the approvers' public keys are."""

    policy_dir: Path = Field(
        default=Path("policies"),
        description="Directory of the risk policies (`low.yaml` … `critical.yaml`); validated at startup.",
    )
    approver_keys_file: Path | None = Field(
        default=None,
        description=(
            "Approvers' Ed25519 public keys, one `name base64key` line each (`modelfleet keygen "
            "--approver NAME` prints it). Without it every approval is rejected, saying so."
        ),
    )
    state_rebuild: Literal["missing", "all"] = Field(
        default="missing",
        description=(
            "At startup, rebuild from the compacted `deployments` and `model-specs` topics the "
            "rollout state and spec of the models missing from the local store (`missing`: after "
            "losing FLEET_STATE_DIR), or of every model (`all`: the store is known to be stale; "
            "per-step request counts restart)."
        ),
    )
    state_rebuild_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long reading each compacted topic at startup may take before startup fails.",
    )
    deployer_metrics_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How often models by stage and the oldest canary are counted (one scan of small rows).",
    )
