"""Data batches and content-addressed dataset versions."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .envelope import Contract, Event

DataFormat = Literal["csv", "parquet"]


class DataBatchSubmitted(Event):
    """A batch of rows is ready to become (part of) a dataset version."""

    key_field: ClassVar[str] = "dataset"
    event_type: Literal["data.batch.submitted"] = "data.batch.submitted"
    schema_version: Literal[1] = 1
    dataset: str = Field(min_length=1, description="Dataset the batch belongs to.")
    uri: str = Field(min_length=1, description="Where the batch is: a path or any fsspec URI.")
    format: DataFormat | None = Field(
        default=None, description="File format; inferred from the URI's suffix when empty."
    )


class ColumnInfo(Contract):
    """Name and type of one column of a dataset version."""

    name: str = Field(description="Column name.")
    dtype: str = Field(description="Arrow type of the column, e.g. `double` or `string`.")


class DatasetVersionCreated(Event):
    """An immutable, content-addressed dataset version is stored and readable forever."""

    key_field: ClassVar[str] = "dataset"
    event_type: Literal["dataset.version.created"] = "dataset.version.created"
    schema_version: Literal[1] = 1
    dataset: str = Field(min_length=1, description="Dataset name.")
    version: str = Field(
        min_length=1, description="Content hash (sha256 hex) of the stored data: its identity."
    )
    uri: str = Field(min_length=1, description="Where the immutable Parquet file is stored.")
    row_count: int = Field(ge=0, description="Rows in the version.")
    columns: list[ColumnInfo] = Field(description="Schema of the version.")
    source_uri: str = Field(description="The batch it was made from.")
    profile_uri: str | None = Field(
        default=None, description="Reference profile (per-feature statistics) used for drift."
    )


class DataProblem(Contract):
    """One reason a batch was rejected."""

    column: str | None = Field(default=None, description="Column at fault; empty for the file.")
    code: str = Field(description="Machine-readable problem, e.g. `unreadable` or `out_of_range`.")
    message: str = Field(description="What is wrong and how to fix it.")


class DatasetVersionRejected(Event):
    """A batch failed validation; its raw bytes are quarantined, never dropped."""

    key_field: ClassVar[str] = "dataset"
    event_type: Literal["dataset.version.rejected"] = "dataset.version.rejected"
    schema_version: Literal[1] = 1
    dataset: str = Field(min_length=1, description="Dataset name.")
    source_uri: str = Field(description="The rejected batch.")
    quarantine_uri: str = Field(description="Where the raw bytes of the batch were kept.")
    problems: list[DataProblem] = Field(min_length=1, description="Every problem found.")
