"""Settings of the registry service."""

from pathlib import Path

from pydantic import Field

from modelfleet_common.settings import ServiceSettings


class RegistrySettings(ServiceSettings):
    """`FLEET_*` settings plus the signing key and how long to wait for MLflow."""

    signing_key_file: Path | None = Field(
        default=None,
        description=(
            "Ed25519 private key (PEM) that signs every registered version; created, with its public "
            "key next to it as `<file>.pub`, if missing. Default: `<state_dir>/signing/ed25519.pem`."
        ),
    )
    version_ready_timeout_seconds: float = Field(
        default=120, gt=0, description="How long to wait for a new model version to become READY."
    )
    mlflow_retry_attempts: int = Field(
        default=3, ge=1, description="Tries of an MLflow call that fails transiently (5xx, timeouts)."
    )
    mlflow_retry_backoff_seconds: float = Field(
        default=0.5, gt=0, description="First delay between MLflow retries; doubles per try."
    )

    @property
    def signing_key_path(self) -> Path:
        """The signing key file: the setting, or its default under the state directory."""
        return self.signing_key_file or self.state_dir / "signing" / "ed25519.pem"
