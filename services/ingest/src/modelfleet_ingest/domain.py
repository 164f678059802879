"""Pure rules of ingest: what identifies a dataset version."""

from __future__ import annotations

import hashlib

import pyarrow as pa


def content_version(table: pa.Table) -> str:
    """sha256 of the table's Arrow IPC stream: same rows, columns and types, same version,
    whatever file format or file name the batch came in."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def infer_format(uri: str, declared: str | None) -> str:
    """The batch's format: declared, else from the suffix; raises ValueError if neither says."""
    if declared:
        return declared
    lowered = uri.lower()
    for suffix, fmt in ((".csv", "csv"), (".parquet", "parquet"), (".pq", "parquet")):
        if lowered.endswith(suffix):
            return fmt
    raise ValueError(f"cannot tell the format of {uri!r}: name it .csv or .parquet, or set `format`")
