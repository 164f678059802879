"""Settings of the deployer service."""

from pathlib import Path

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
