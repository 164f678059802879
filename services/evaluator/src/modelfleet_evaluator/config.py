"""Settings of the evaluator service."""

from pathlib import Path

from pydantic import Field

from modelfleet_common.settings import ServiceSettings


class EvaluatorSettings(ServiceSettings):
    """`FLEET_*` settings plus where the risk policies are and how gates are measured."""

    policy_dir: Path = Field(
        default=Path("policies"),
        description="Directory of the risk policies (`low.yaml` … `critical.yaml`); validated at startup.",
    )
    latency_sample_rows: int = Field(
        default=12,
        ge=1,
        le=1000,
        description="Rows whose single-row prediction is timed (twice) for the p95 latency gate.",
    )
    random_seed: int = Field(
        default=0,
        description="Seed of the bootstrap and of the robustness noise: evaluations are reproducible.",
    )
    report_dpi: int = Field(default=80, ge=30, le=300, description="Resolution of the report's figure.")
    mlflow_retry_attempts: int = Field(
        default=3, ge=1, description="Tries of an MLflow call that fails transiently (5xx, timeouts)."
    )
    mlflow_retry_backoff_seconds: float = Field(
        default=0.5, gt=0, description="First delay between MLflow retries; doubles per try."
    )
