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
