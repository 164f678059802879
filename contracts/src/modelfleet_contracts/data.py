"""Data batches and content-addressed dataset versions."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from .envelope import Contract, Event

DataFormat = Literal["csv", "parquet"]
ColumnType = Literal["float", "int", "string", "bool", "timestamp"]
BatchMode = Literal["append", "replace"]
DATASET_NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,118}[a-z0-9])?$"


class ColumnSpec(Contract):
    """What one column of a dataset must look like; ingest rejects batches that break it."""

    name: str = Field(min_length=1, description="Column name as it appears in the batch files.")
    type: ColumnType = Field(description="Logical type; ingest casts and rejects values that do not fit.")
    nullable: bool = Field(default=False, description="Whether empty values are allowed.")
    min: float | None = Field(default=None, description="Smallest allowed value (numeric columns).")
    max: float | None = Field(default=None, description="Largest allowed value (numeric columns).")
    categories: list[str] | None = Field(
        default=None, description="Allowed values of a string column; any other value is rejected."
    )
    description: str = Field(default="", description="What the column means.")

    @model_validator(mode="after")
    def _bounds_fit_the_type(self) -> ColumnSpec:
        if (self.min is not None or self.max is not None) and self.type not in ("float", "int"):
            raise ValueError(f"column {self.name!r}: min/max apply to float and int columns only")
        if self.categories is not None and self.type != "string":
            raise ValueError(f"column {self.name!r}: categories apply to string columns only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column {self.name!r}: min {self.min} is above max {self.max}")
        return self


class DatasetMetadata(Contract):
    """Name and owner of a dataset."""

    name: str = Field(pattern=DATASET_NAME_PATTERN, description="Unique dataset name.")
    owner: str = Field(default="", description="Team or person accountable for the data.")
    description: str = Field(default="", description="What one row is.")


class DatasetSchema(Contract):
    """The declared schema of a dataset and, optionally, its first batch."""

    columns: list[ColumnSpec] = Field(min_length=1, description="Every column a batch must have.")
    time_column: str | None = Field(
        default=None, description="Column that orders rows in time (time-series datasets)."
    )
    source: str | None = Field(
        default=None,
        description=(
            "A batch to ingest when the spec is applied: a path relative to the spec file, or any fsspec URI."
        ),
    )

    @model_validator(mode="after")
    def _columns_are_unique(self) -> DatasetSchema:
        names = [column.name for column in self.columns]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"columns declared more than once: {duplicates}")
        if self.time_column is not None and self.time_column not in names:
            raise ValueError(f"time_column {self.time_column!r} is not one of the columns")
        return self


class DatasetSpec(Contract):
    """A `Dataset` document as written by a team (`apiVersion: modelfleet/v1`)."""

    api_version: Literal["modelfleet/v1"] = Field(
        default="modelfleet/v1", alias="apiVersion", description="Spec format version."
    )
    kind: Literal["Dataset"] = Field(default="Dataset", description="Document kind.")
    metadata: DatasetMetadata = Field(description="Name and owner.")
    spec: DatasetSchema = Field(description="Declared schema.")

    model_config = Contract.model_config | {"populate_by_name": True}


class DatasetSpecSubmitted(Event):
    """A dataset's schema was declared or changed. Compacted by dataset: the latest one holds."""

    key_field: ClassVar[str] = "dataset"
    event_type: Literal["dataset.spec.submitted"] = "dataset.spec.submitted"
    schema_version: Literal[1] = 1
    dataset: str = Field(pattern=DATASET_NAME_PATTERN, description="Dataset name (= metadata.name).")
    revision: str = Field(min_length=1, description="Content hash of the canonical spec.")
    spec: DatasetSpec = Field(description="The whole dataset document.")


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
    mode: BatchMode = Field(
        default="replace",
        description=(
            "`replace`: the batch is the dataset's whole new version. `append`: the new version is "
            "the dataset's latest version followed by the batch's rows, so the dataset grows."
        ),
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
    origin: Literal["batch", "feedback"] | None = Field(
        default=None,
        description=(
            "`feedback`: ingest appended served predictions joined with their labels. Such a "
            "version becomes the dataset's latest, but trains only the models that ask to be "
            "retrained (drift, decay, a person), not every model bound to the dataset. Empty means "
            "`batch`."
        ),
    )
    feedback_rows: int | None = Field(
        default=None, ge=0, description="Rows of live feedback this version added, for `feedback`."
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
    rows_rejected: int | None = Field(
        default=None, ge=0, description="Rows that broke the schema, when the file could be read."
    )
