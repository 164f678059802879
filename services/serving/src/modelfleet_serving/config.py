"""Settings of the serving service."""

from pathlib import Path

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
