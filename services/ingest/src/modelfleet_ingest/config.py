"""Settings of the ingest service."""

from pydantic import Field

from modelfleet_common.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    """`FLEET_*` settings plus where datasets live and how long a batch waits for its spec."""

    data_dir: str = Field(
        default=".local/data",
        description=(
            "Root of the dataset store (`FLEET_DATA_DIR`): a local path or any fsspec URI "
            "(`file://...`, `s3://bucket/prefix`, `memory://...`); versions, profiles and the "
            "quarantine live below it."
        ),
    )
    spec_wait_seconds: float = Field(
        default=5.0,
        ge=0,
        description=(
            "How long a batch of a dataset whose spec has not arrived yet waits for it before being "
            "rejected as `undeclared_dataset` (`modelfleet apply` publishes both back-to-back)."
        ),
    )
    spec_wait_first_interval_seconds: float = Field(
        default=0.1,
        gt=0,
        description="First pause while waiting for a dataset's spec; doubles up to one second.",
    )
    ingest_feedback_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "How often joined live feedback (served predictions + their labels) is appended to its "
            "dataset as a new `feedback` version (`FLEET_INGEST_FEEDBACK_SECONDS`)."
        ),
    )
    ingest_feedback_min_rows: int = Field(
        default=1,
        ge=1,
        description="Fewest joined feedback rows of a dataset that make a new version; fewer wait.",
    )
    ingest_feedback_max_waiting: int = Field(
        default=50_000,
        ge=1,
        description=(
            "Most predictions (and, separately, labels) per model that wait for their other half; "
            "the oldest are dropped first and counted in `fleet_ingest_feedback_dropped_total`."
        ),
    )
    ingest_feedback_ttl_seconds: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description=(
            "Longest a prediction waits for its label, or a label for its prediction (by event "
            "time), before it is dropped."
        ),
    )
