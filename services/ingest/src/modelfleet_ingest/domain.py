"""Pure rules of ingest: what identifies a dataset version, and its reference profile for drift."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The profile layout is shared with the monitor, which reads it.
from modelfleet_common.profiles import PROFILE_VERSION, drift_bins, reference_profile

__all__ = ["PROFILE_VERSION", "content_version", "drift_bins", "infer_format", "reference_profile"]


def content_version(table: pa.Table) -> str:
    """sha256 of the table's logical content: column names, types, validity and values.

    It is computed from canonical bytes (nulls zero-filled, chunks joined, no schema metadata), so
    the same rows give the same version whatever file format, chunking or writer they came from.
    """
    digest = hashlib.sha256()
    header = json.dumps([[field.name, str(field.type)] for field in table.schema], separators=(",", ":"))
    for part in (header.encode(), str(table.num_rows).encode()):
        _update(digest, part)
    for column in table.columns:
        array = column.combine_chunks()
        _update(digest, np.packbits(_valid(array)).tobytes())
        for part in _value_bytes(array):
            _update(digest, part)
    return digest.hexdigest()


def infer_format(uri: str, declared: str | None) -> str:
    """The batch's format: declared, else from the suffix; raises ValueError if neither says."""
    if declared:
        return declared
    lowered = uri.lower()
    for suffix, fmt in ((".csv", "csv"), (".parquet", "parquet"), (".pq", "parquet")):
        if lowered.endswith(suffix):
            return fmt
    raise ValueError(f"cannot tell the format of {uri!r}: name it .csv or .parquet, or set `format`")


def _update(digest: Any, part: bytes) -> None:
    # Length-prefixed so that no two different sequences of parts hash alike.
    digest.update(len(part).to_bytes(8, "little"))
    digest.update(part)


def _valid(array: pa.Array) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _value_bytes(array: pa.Array) -> list[bytes]:
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        filled = pc.fill_null(array, "")
        offsets_type = np.int64 if pa.types.is_large_string(kind) else np.int32
        _, offsets_buffer, data_buffer = filled.buffers()
        offsets = np.frombuffer(offsets_buffer, dtype=offsets_type)[
            filled.offset : filled.offset + len(filled) + 1
        ]
        data = (
            b""
            if data_buffer is None or len(filled) == 0
            else data_buffer.to_pybytes()[offsets[0] : offsets[-1]]
        )
        lengths = np.diff(offsets).astype("<i8")
        return [lengths.tobytes(), data]
    if pa.types.is_boolean(kind):
        filled = pc.fill_null(array, False)
        return [np.packbits(np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)).tobytes()]
    if pa.types.is_timestamp(kind):
        array = array.cast(pa.int64())
        kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        filled = pc.fill_null(array, pa.scalar(0, type=kind))
        numbers = np.asarray(filled.to_numpy(zero_copy_only=False))
        return [numbers.astype(numbers.dtype.newbyteorder("<")).tobytes()]
    raise ValueError(f"no content version for columns of type {kind}")
