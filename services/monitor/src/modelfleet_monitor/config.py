"""Settings of the monitor service."""

from pathlib import Path

from pydantic import Field

from modelfleet_common.settings import ServiceSettings


class MonitorSettings(ServiceSettings):
    """`FLEET_*` settings plus where the risk policies are and how health is reported."""

    policy_dir: Path = Field(
        default=Path("policies"),
        description=(
            "Directory of the risk policies (`low.yaml` … `critical.yaml`) whose monitoring SLOs "
            "apply; validated at startup."
        ),
    )
    monitor_report_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between two health reports (`FLEET_MONITOR_REPORT_SECONDS`).",
    )
    monitor_checkpoint_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds between two checkpoints of the drift and decay windows to the state engine "
            "(`FLEET_MONITOR_CHECKPOINT_SECONDS`); they are also written when partitions are revoked "
            "and when the service stops. A kill loses at most the rows counted since the last one."
        ),
    )
    # `FLEET_MONITOR_LABEL_BUFFER_SIZE` and `FLEET_MONITOR_LABEL_TTL_SECONDS` are gone: the monitor no
    # longer joins labels with predictions (ingest does, once: `PredictionsLabeled`), so nothing
    # waits for a label here; set, they are ignored.
    monitor_dedupe_size: int = Field(
        default=10_000,
        ge=1,
        description=(
            "Most recent predictions (request id and version) and joins (`PredictionsLabeled` event "
            "ids) per model remembered so that a redelivery or a republished join counts once "
            "(`FLEET_MONITOR_DEDUPE_SIZE`); the oldest are forgotten first."
        ),
    )
    monitor_slo_min_requests: int = Field(
        default=1,
        ge=1,
        description="Fewest requests in a window for it to be judged against the SLOs (`SloBreached`).",
    )
    monitor_reference_cache_size: int = Field(
        default=1024,
        ge=1,
        description=(
            "Reference profiles (per dataset version and feature list) kept in memory; more are "
            "read again from the dataset store when needed."
        ),
    )
