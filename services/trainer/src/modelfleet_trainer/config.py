"""Settings of the trainer service."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from modelfleet_common.settings import ServiceSettings


class TrainerSettings(ServiceSettings):
    """`FLEET_*` settings plus how trainings run: where, how many at once, how often retried."""

    policy_dir: Path = Field(
        default=Path("policies"),
        description=(
            "Directory of the risk policies (`low.yaml` … `critical.yaml`): their `retrain` part says "
            "whether drift and decay retrain a model, and the cooldown between two such retrains."
        ),
    )
    retrain_data_wait_seconds: float = Field(
        default=120.0,
        ge=0,
        description=(
            "How long a retrain on drift or decay waits for a dataset version newer than the window "
            "that triggered it (ingest makes one from live feedback every `FLEET_INGEST_FEEDBACK_SECONDS`)."
        ),
    )
    max_concurrent_trainings: int = Field(
        default=2, ge=1, description="Trainings (fit + MLflow logging) running at the same time."
    )
    training_runner: Literal["ray", "in_process"] = Field(
        default="ray",
        description="`ray`: each training is a Ray task; `in_process`: a thread of this process (dev/tests).",
    )
    ray_address: str | None = Field(
        default=None,
        description=(
            "Ray cluster to submit trainings to (e.g. `ray://head:10001`); empty: the `RAY_ADDRESS` "
            "environment variable, else a local Ray instance started on first use."
        ),
    )
    ray_num_cpus: int = Field(default=2, ge=1, description="CPUs of the local Ray instance (no cluster).")
    max_training_attempts: int = Field(
        default=3, ge=1, description="Tries of a training that fails transiently (MLflow, network, Ray)."
    )
    training_backoff_seconds: float = Field(
        default=1.0, gt=0, description="Wait before the second try of a training; doubles per try."
    )
    dataset_cache_size: int = Field(
        default=4, ge=0, description="Dataset versions kept in memory per training process (0: none)."
    )
    mlflow_artifact_root: str | None = Field(
        default=None,
        description=(
            "Artifact root of new experiments (`<root>/<model>`); only for a tracking URI without a "
            "server (`sqlite:///…`). Empty: the tracking server's default."
        ),
    )
    code_version: str | None = Field(
        default=None,
        description=(
            "Code version recorded on every run; empty: the git commit of the checkout, else the "
            "trainer package version."
        ),
    )
    max_poll_interval_seconds: int = Field(
        default=3600,
        ge=60,
        description=(
            "Longest a consumer may spend on one event (all trainings it triggers) before Kafka "
            "considers it dead and rebalances."
        ),
    )
