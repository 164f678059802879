"""Settings of the ingest service."""

from pathlib import Path

from pydantic import Field

from modelfleet_common.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    """`FLEET_*` settings plus where datasets and quarantined batches are stored."""

    data_dir: Path = Field(default=Path(".local/data"), description="Root of the dataset store.")
