"""Settings of the serving service."""

from pathlib import Path
from typing import Literal

from pydantic import Field

from modelfleet_common.settings import ServiceSettings


class ServingSettings(ServiceSettings):
    """`FLEET_*` settings of serving: how many models it keeps loaded and for how long."""

    serving_memory_budget_mb: float = Field(
        default=1024.0,
        gt=0,
        description=(
            "Memory the loaded models may use together, in MB; beyond it the least recently used "
            "models are unloaded. A model's memory is estimated as its file size times "
            "FLEET_SERVING_MEMORY_FACTOR."
        ),
    )
    serving_memory_factor: float = Field(
        default=3.0,
        ge=1,
        description=(
            "In-memory size of a model per byte of its files: skops files are zip-compressed and "
            "estimators hold working arrays, so a loaded model is larger than its files."
        ),
    )
    serving_idle_unload_seconds: float = Field(
        default=900.0,
        gt=0,
        description="A model not used for this long is unloaded (scale to zero per model).",
    )
    serving_refusal_retry_seconds: float = Field(
        default=60.0,
        ge=0,
        description=(
            "After a version's files fail verification, requests for it are refused without a new "
            "download for this long (a tampered artifact must not cause a download per request)."
        ),
    )
    serving_model_dir: Path = Field(
        default=Path(".local/serving/models"),
        description="Scratch directory where model files are downloaded and verified before loading.",
    )
    serving_log_flush_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Buffered prediction records are published to prediction-logs at least this often.",
    )
    serving_log_batch_size: int = Field(
        default=500,
        ge=1,
        description="Prediction records per PredictionLogged event; a full batch is flushed at once.",
    )
    serving_log_buffer_limit: int = Field(
        default=50_000,
        ge=1,
        description=(
            "Most prediction records kept while prediction-logs cannot be reached; beyond it the "
            "oldest are dropped and counted in fleet_serving_prediction_logs_dropped_total."
        ),
    )
    serving_unload_check_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often to unload the models idle past FLEET_SERVING_IDLE_UNLOAD_SECONDS.",
    )

    # -- the doors: who may call, and how much ------------------------------------------------------
    serving_auth: Literal["required", "disabled"] = Field(
        default="required",
        description=(
            "`required` (default): /predict and /feedback need a bearer token listed in "
            "FLEET_SERVING_TOKENS_FILE, and serving refuses to start without that file. "
            "`disabled` lets anyone on the network predict and send labels (which steer canaries "
            "and become training rows): UNSAFE, only for a closed test network."
        ),
    )
    serving_tokens_file: Path | None = Field(
        default=None,
        description=(
            "YAML file of the accepted bearer tokens, as SHA-256 hashes with their scopes and "
            "optional model-name prefix (`modelfleet tokens create` prints an entry); fits a "
            "Kubernetes Secret mounted as a file, and is re-read when it changes."
        ),
    )
    serving_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body, in bytes; a larger one is answered 413 before it is read.",
    )
    serving_max_rows: int = Field(
        default=1000, ge=1, description="Most rows of one /predict request; more are answered 413."
    )
    serving_max_columns: int = Field(
        default=256,
        ge=1,
        description="Most columns of one row (inputs plus context); more are answered 413.",
    )
    serving_feedback_ttl_seconds: float = Field(
        default=24 * 3600.0,
        gt=0,
        description=(
            "How long after an answer serving accepts its label on /feedback; later, or for a "
            "request id it never answered for that model, feedback is answered 404."
        ),
    )
    serving_feedback_max_requests: int = Field(
        default=20_000,
        ge=1,
        description=(
            "Answered requests remembered per model for /feedback; beyond it the oldest are "
            "forgotten (their labels then get 404), so memory stays bounded."
        ),
    )
    serving_log_max_event_bytes: int = Field(
        default=900_000,
        ge=10_000,
        description=(
            "Largest PredictionLogged event, in bytes of JSON: records are batched up to it (below "
            "Kafka's default 1 MiB message limit); a single record larger than it is dead-lettered "
            "alone (its size and ids, not its features) and counted."
        ),
    )
    serving_log_buffer_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024 * 1024,
        description=(
            "Most bytes of prediction records buffered while prediction-logs cannot be reached; "
            "beyond it the oldest are dropped, like FLEET_SERVING_LOG_BUFFER_LIMIT."
        ),
    )
