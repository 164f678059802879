"""Settings of the ingest service."""

import json
from typing import Annotated, Any, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from modelfleet_common.settings import ServiceSettings

from .feedback_state import DEFAULT_CLAIM_SECONDS
from .store import DEFAULT_MAX_BATCH_BYTES, UPLOADS


class IngestSettings(ServiceSettings):
    """`FLEET_*` settings plus where datasets live and how long a batch waits for its spec."""

    data_dir: str = Field(
        default=".local/data",
        description=(
            "Root of the dataset store (`FLEET_DATA_DIR`): a local path or any fsspec URI "
            "(`file://...`, `s3://bucket/prefix`, `memory://...`); versions, profiles and the "
            "quarantine live below it. Every replica must see the same store: with replicas > 1, a "
            "ReadWriteMany volume or an object store (`memory://` is one process's)."
        ),
    )
    ingest_allowed_roots: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description=(
            "Where batches may be read from (`FLEET_INGEST_ALLOWED_ROOTS`): comma-separated paths or "
            f"fsspec URI prefixes (`s3://bucket/incoming`). Default: the dataset store "
            f"(`FLEET_DATA_DIR`), which holds the upload area `{UPLOADS}/` that `modelfleet ingest` "
            "copies files into. Local paths are compared after resolving `..` and symlinks; "
            "`/proc`, `/sys`, `/dev`, devices, FIFOs, sockets and directories are never read."
        ),
    )
    ingest_max_bytes: int = Field(
        default=DEFAULT_MAX_BATCH_BYTES,
        gt=0,
        description=(
            "Largest batch ingest reads, in bytes (`FLEET_INGEST_MAX_BYTES`); a larger file is "
            "rejected from its size alone, without being read."
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
    ingest_feedback_claim_seconds: float = Field(
        default=DEFAULT_CLAIM_SECONDS,
        gt=0,
        description=(
            "How long a replica's claim on a dataset's joined feedback rows holds "
            "(`FLEET_INGEST_FEEDBACK_CLAIM_SECONDS`): a flush that fails replays its claim at the "
            "same replica's next flush; a claim of a replica killed mid-flush is taken over by "
            "another replica once it lapses. Longer than any flush."
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

    @field_validator("ingest_allowed_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        """`a,b` or a JSON list, as the environment gives it."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            return json.loads(value)
        return tuple(part.strip() for part in value.split(",") if part.strip())

    @model_validator(mode="after")
    def _store_is_the_default_root(self) -> Self:
        if not self.ingest_allowed_roots:
            self.ingest_allowed_roots = (self.data_dir,)
        return self
