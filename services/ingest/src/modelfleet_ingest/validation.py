"""Pure rules of a declared schema: read a batch's bytes, find every problem, cast to the declared types.

Everything here works on whole columns (pyarrow compute, numpy masks); Python only touches the
handful of example values a message quotes. Rows in messages are "data rows" counted from 1, so
the first row after a CSV header is data row 1.

A message quotes a file's own text (undeclared column names, offending values) only as much as
needed to fix it: at most `QUOTED_CHARS` characters of each, and nothing that looks like a
credential (`NAME=value` lines of an env file, `password: ...`, PEM blocks), so that a file sent
by mistake cannot leak a secret through a rejection.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv
import pyarrow.parquet as pq

from modelfleet_contracts import ColumnSpec, DataProblem
from modelfleet_contracts.data import ColumnType, DatasetSchema

Mask = npt.NDArray[np.bool_]

# Problem codes: the machine-readable half of every `DataProblem` ingest publishes.
UNREADABLE: Final = "unreadable"
INVALID_DATASET_NAME: Final = "invalid_dataset_name"
UNDECLARED_DATASET: Final = "undeclared_dataset"
MISSING_COLUMN: Final = "missing_column"
UNEXPECTED_COLUMN: Final = "unexpected_column"
DUPLICATE_COLUMN: Final = "duplicate_column"
BAD_TYPE: Final = "bad_type"
NULL_NOT_ALLOWED: Final = "null_not_allowed"
OUT_OF_RANGE: Final = "out_of_range"
UNKNOWN_CATEGORY: Final = "unknown_category"
APPEND_BASE_INCOMPATIBLE: Final = "append_base_incompatible"

#: The Arrow type each declared type is stored as.
ARROW_TYPES: Final[dict[ColumnType, pa.DataType]] = {
    "float": pa.float64(),
    "int": pa.int64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}

#: How many offending values a message quotes.
EXAMPLES: Final = 5
#: Longest text of the file a message quotes (column name or value); longer text is cut.
QUOTED_CHARS: Final = 60
REDACTED: Final = "<redacted: looks like a credential>"
# A line of an env or config file (`FLEET_KAFKA_SASL_PASSWORD=...`, `export A=b`), a key-like word
# with a value (`password: x`, `api_key=...`), or a PEM block.
_SECRET_SHAPED = re.compile(
    r"^\s*(export\s+)?[A-Za-z_][A-Za-z0-9_.]*\s*=|"
    r"(passw(or)?d|secret|token|api[_-]?key|credential|private[_-]?key|auth)[\w.-]*\s*[=:]|"
    r"-----BEGIN",
    re.IGNORECASE,
)

# In a non-string column these spellings mean "no value" (as in pandas); in a string column only
# an empty cell does, so a category such as "NA" (North America) survives.
_NULL_WORDS = pa.array(["NA", "N/A", "n/a", "NaN", "nan", "-nan", "NULL", "null", "None", "#N/A"])
_TRUE_WORDS = pa.array(["true", "t", "yes", "y", "1"])
_FALSE_WORDS = pa.array(["false", "f", "no", "n", "0"])
_FLOAT_TEXT = r"^[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|inf|infinity|nan)$"
_INT_TEXT = r"^[+-]?\d+(\.0*)?$"
# Sign kept only when negative, leading zeros and a ".000" tail dropped: "+007.0" -> "7".
_INT_CANONICAL = (r"^(?:\+|(-))?0*(\d+?)(?:\.0*)?$", r"\1\2")
_INT64_DIGITS = 19
_INT64_MAX_DIGITS = "9223372036854775807"
_INT64_MIN_DIGITS = "9223372036854775808"
_INT64_FLOAT_LIMIT = 2.0**63

_HINTS: Final[dict[ColumnType, str]] = {
    "float": "Write numbers with a dot as the decimal separator (e.g. 1.5)",
    "int": "Write whole numbers (e.g. 42)",
    "bool": "Write true or false (1/0, yes/no, t/f and y/n are accepted too)",
    "timestamp": "Write ISO 8601 timestamps (e.g. 2024-05-01T12:00:00Z; without an offset, UTC is assumed)",
    "string": "Store the values as text",
}


class UnreadableBatch(Exception):
    """The batch's bytes could not be read as the format it claims."""


@dataclass(frozen=True)
class Validation:
    """The outcome of checking a batch: the cast table when it is valid, else every problem, and
    which rows are at fault (all of them when the set of columns is wrong)."""

    table: pa.Table | None
    problems: list[DataProblem]
    rows_rejected: int
    rejected: Mask = field(default_factory=lambda: np.zeros(0, dtype=bool))


@dataclass(frozen=True)
class _Cast:
    values: pa.Array  # declared type; null where the source was null or did not cast
    bad: Mask  # rows whose non-null source value does not cast


def parse_batch(raw: bytes, fmt: str, declared: Sequence[str] = ()) -> pa.Table:
    """Read CSV or Parquet bytes. Declared CSV columns are read as text, so that ingest (not a
    type guess) decides what casts and can quote the offending cells; raises `UnreadableBatch`."""
    try:
        if fmt == "csv":
            options = pyarrow.csv.ConvertOptions(
                column_types=dict.fromkeys(declared, pa.string()),
                strings_can_be_null=True,
                null_values=[""],
            )
            return pyarrow.csv.read_csv(pa.BufferReader(raw), convert_options=options)
        if fmt == "parquet":
            return pq.read_table(pa.BufferReader(raw))
    except (OSError, pa.ArrowException) as error:
        raise UnreadableBatch(f"cannot read the batch as {fmt}: {_reading_error(error)}") from error
    raise UnreadableBatch(f"unknown format {fmt!r}: use csv or parquet")


def quote(text: str) -> str:
    """`text` of a file as a message may show it: cut to `QUOTED_CHARS`, or `REDACTED` when it looks
    like a credential."""
    if _SECRET_SHAPED.search(text):
        return REDACTED
    return text if len(text) <= QUOTED_CHARS else f"{text[:QUOTED_CHARS]}…"


def _reading_error(error: Exception) -> str:
    """pyarrow's reason, without the row it quotes ("Expected 3 columns, got 1: <the row>") and with
    every quoted value passed through `quote`."""
    message = re.sub(r"(got \d+)\s*:.*", r"\1 (the row is not quoted)", str(error), flags=re.DOTALL)
    return re.sub(r"'([^']*)'", lambda value: repr(quote(value.group(1))), message)


def validate_batch(table: pa.Table, schema: DatasetSchema) -> Validation:
    """Check a batch against the declared schema and cast it (columns in declared order).

    Every problem is collected, column by column; `rows_rejected` counts rows with at least one bad
    value, or all rows when the set of columns itself is wrong.
    """
    problems = _column_set_problems(table.column_names, schema)
    structural = bool(problems)
    positions = {name: table.column_names.index(name) for name in dict.fromkeys(table.column_names)}
    rejected = np.zeros(table.num_rows, dtype=bool)
    cast_columns: list[pa.Array] = []
    for spec in schema.columns:
        if spec.name not in positions:
            continue
        source = table.column(positions[spec.name]).combine_chunks()
        cast = cast_column(source, spec.type)
        column_problems, bad_rows = _value_problems(spec, source, cast)
        problems += column_problems
        rejected |= bad_rows
        cast_columns.append(cast.values)
    if structural:
        rejected[:] = True
    if problems:
        return Validation(table=None, problems=problems, rows_rejected=int(rejected.sum()), rejected=rejected)
    declared = pa.schema([pa.field(spec.name, ARROW_TYPES[spec.type]) for spec in schema.columns])
    table = pa.Table.from_arrays(cast_columns, schema=declared)
    return Validation(table=table, problems=[], rows_rejected=0, rejected=rejected)


def cast_column(source: pa.Array, column_type: ColumnType) -> _Cast:
    """Cast one column to a declared type, marking (not raising on) values that do not fit."""
    if pa.types.is_dictionary(source.type):
        source = source.dictionary_decode()
    if pa.types.is_null(source.type):
        return _Cast(pa.nulls(len(source), ARROW_TYPES[column_type]), np.zeros(len(source), dtype=bool))
    if pa.types.is_string(source.type) or pa.types.is_large_string(source.type):
        return _cast_text(source.cast(pa.string()), column_type)
    return _cast_typed(source, column_type)


def _column_set_problems(present: list[str], schema: DatasetSchema) -> list[DataProblem]:
    declared = [column.name for column in schema.columns]
    problems = [
        DataProblem(
            column=spec.name,
            code=MISSING_COLUMN,
            message=(
                f"column {spec.name!r} ({spec.type}) is declared in the Dataset spec but missing from "
                f"the batch, which has columns {_names([quote(name) for name in present])}: add it to "
                "the batch, or remove it from the spec"
            ),
        )
        for spec in schema.columns
        if spec.name not in present
    ]
    problems += [
        DataProblem(
            column=quote(name),
            code=UNEXPECTED_COLUMN,
            message=(
                f"column {quote(name)!r} is in the batch but not declared in the Dataset spec "
                f"(declared: {_names(declared)}): remove it from the batch, or declare it in the spec"
            ),
        )
        for name in dict.fromkeys(present)
        if name not in declared
    ]
    problems += [
        DataProblem(
            column=quote(name),
            code=DUPLICATE_COLUMN,
            message=f"column {quote(name)!r} appears {present.count(name)} times in the batch: keep only one",
        )
        for name in dict.fromkeys(present)
        if present.count(name) > 1
    ]
    return problems


def _value_problems(spec: ColumnSpec, source: pa.Array, cast: _Cast) -> tuple[list[DataProblem], Mask]:
    total = len(source)
    problems: list[DataProblem] = []
    rows = cast.bad.copy()
    if cast.bad.any():
        problems.append(
            DataProblem(
                column=spec.name,
                code=BAD_TYPE,
                message=(
                    f"{_count(cast.bad, total)} values of column {spec.name!r} do not cast to {spec.type}: "
                    f"{_examples(source, cast.bad)}{_stored_as(source)}. {_HINTS[spec.type]}, or change "
                    "the column's `type` in the Dataset spec"
                ),
            )
        )
    nulls = _mask(cast.values.is_null()) & ~cast.bad
    if not spec.nullable and nulls.any():
        rows |= nulls
        problems.append(
            DataProblem(
                column=spec.name,
                code=NULL_NOT_ALLOWED,
                message=(
                    f"{_count(nulls, total)} values of column {spec.name!r} are empty "
                    f"({_rows(nulls)}) but the column is not nullable: fill them in, or declare "
                    "`nullable: true` in the Dataset spec"
                ),
            )
        )
    if spec.min is not None or spec.max is not None:
        outside = _outside(cast.values, spec.min, spec.max)
        if outside.any():
            rows |= outside
            problems.append(_out_of_range(spec, cast.values, outside, total))
    if spec.categories is not None:
        unknown = ~_mask(pc.is_in(cast.values, value_set=pa.array(spec.categories, pa.string())))
        unknown &= ~_mask(cast.values.is_null())
        if unknown.any():
            rows |= unknown
            problems.append(_unknown_categories(spec, cast.values, unknown, total))
    return problems, rows


def _out_of_range(spec: ColumnSpec, values: pa.Array, outside: Mask, total: int) -> DataProblem:
    if spec.min is not None and spec.max is not None:
        bound = f"outside the declared range [{_number(spec.min)}, {_number(spec.max)}]"
    elif spec.min is not None:
        bound = f"below the declared min {_number(spec.min)}"
    else:
        bound = f"above the declared max {_number(spec.max)}"
    offending = values.filter(pa.array(outside))
    extremes = pc.min_max(offending)
    return DataProblem(
        column=spec.name,
        code=OUT_OF_RANGE,
        message=(
            f"{_count(outside, total)} values of column {spec.name!r} are {bound}: "
            f"{_examples(values, outside)}; the offending values run from "
            f"{_number(extremes['min'].as_py())} to {_number(extremes['max'].as_py())}. Fix the "
            "values, or widen `min`/`max` in the Dataset spec"
        ),
    )


def _unknown_categories(spec: ColumnSpec, values: pa.Array, unknown: Mask, total: int) -> DataProblem:
    counts = pc.value_counts(values.filter(pa.array(unknown)))
    order = np.argsort(-np.asarray(counts.field("counts")), kind="stable")[:EXAMPLES]
    frequent = counts.take(pa.array(order)).to_pylist()
    shown = ", ".join(f"{quote(item['values'])!r} in {_plural(item['counts'], 'row')}" for item in frequent)
    more = ", …" if len(counts) > EXAMPLES else ""
    return DataProblem(
        column=spec.name,
        code=UNKNOWN_CATEGORY,
        message=(
            f"{_count(unknown, total)} values of column {spec.name!r} are not among the declared "
            f"categories {_names(spec.categories or [])}: {shown}{more} ({_rows(unknown)}). Fix the "
            "values, or add them to `categories` in the Dataset spec"
        ),
    )


def _cast_text(text: pa.Array, column_type: ColumnType) -> _Cast:
    """Cast text cells; blank cells and the usual null spellings are missing values, not errors."""
    if column_type == "string":
        return _Cast(text, np.zeros(len(text), dtype=bool))
    trimmed = pc.utf8_trim_whitespace(text)
    present = _mask(text.is_valid()) & ~_mask(pc.is_in(trimmed, value_set=_NULL_WORDS))
    present &= _mask(pc.not_equal(trimmed, ""))
    if column_type == "timestamp":
        return _cast_text_timestamps(trimmed, present)
    if column_type == "bool":
        lowered = pc.utf8_lower(trimmed)
        fits = present & _mask(pc.is_in(lowered, value_set=pa.concat_arrays([_TRUE_WORDS, _FALSE_WORDS])))
        values = pc.if_else(pa.array(fits), pc.is_in(lowered, value_set=_TRUE_WORDS), None)
        return _Cast(values, present & ~fits)
    if column_type == "float":
        fits = present & _mask(pc.match_substring_regex(trimmed, _FLOAT_TEXT, ignore_case=True))
        values = pc.if_else(pa.array(fits), trimmed, None).cast(pa.float64())
        return _Cast(_nan_to_null(values), present & ~fits)
    canonical = pc.replace_substring_regex(trimmed, *_INT_CANONICAL)
    digits = pc.utf8_ltrim(canonical, characters="-")
    limit = pc.if_else(pc.starts_with(canonical, "-"), _INT64_MIN_DIGITS, _INT64_MAX_DIGITS)
    lengths = pc.utf8_length(digits)
    in_range = pc.or_(
        pc.less(lengths, _INT64_DIGITS),
        pc.and_(pc.equal(lengths, _INT64_DIGITS), pc.less_equal(digits, limit)),
    )
    fits = present & _mask(pc.match_substring_regex(trimmed, _INT_TEXT)) & _mask(in_range)
    return _Cast(pc.if_else(pa.array(fits), canonical, None).cast(pa.int64()), present & ~fits)


def _cast_text_timestamps(trimmed: pa.Array, present: Mask) -> _Cast:
    # pandas parses mixed ISO 8601 forms (dates, offsets, "Z") in C; a failure becomes NaT.
    candidates = pc.if_else(pa.array(present), trimmed, None).to_numpy(zero_copy_only=False)
    parsed = pd.to_datetime(pd.Series(candidates, dtype=object), utc=True, errors="coerce", format="ISO8601")
    utc_instants = parsed.dt.tz_convert(None).to_numpy()  # naive datetime64 in UTC, NaT for failures
    values = pa.array(utc_instants, from_pandas=True).cast(pa.timestamp("us"), safe=False)
    values = values.cast(ARROW_TYPES["timestamp"])
    return _Cast(values, present & _mask(values.is_null()))


def _cast_typed(source: pa.Array, column_type: ColumnType) -> _Cast:
    """Cast a typed (Parquet) column; a source type that cannot mean the declared type is bad."""
    kind = source.type
    present = _mask(source.is_valid())
    nothing_bad = np.zeros(len(source), dtype=bool)
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    target = ARROW_TYPES[column_type]
    if column_type == "string":
        try:
            return _Cast(source.cast(pa.string()), nothing_bad)
        except pa.ArrowException:  # nested types (lists, structs) have no text form
            return _Cast(pa.nulls(len(source), target), present)
    if column_type == "float" and numeric:
        return _Cast(_nan_to_null(source.cast(pa.float64(), safe=False)), nothing_bad)
    if column_type == "int" and pa.types.is_integer(kind):
        fits = (
            present & ~_mask(pc.greater(source, pa.scalar(2**63 - 1, pa.uint64())))
            if kind == pa.uint64()
            else present
        )
        return _Cast(pc.if_else(pa.array(fits), source, None).cast(pa.int64()), present & ~fits)
    if column_type == "int" and numeric:
        as_float = _nan_to_null(source.cast(pa.float64(), safe=False))
        defined = _mask(as_float.is_valid())
        whole = _mask(pc.equal(pc.floor(as_float), as_float)) & _mask(
            pc.less(pc.abs(as_float), _INT64_FLOAT_LIMIT)
        )
        fits = defined & whole
        return _Cast(pc.if_else(pa.array(fits), as_float, None).cast(pa.int64()), defined & ~fits)
    if column_type == "bool" and pa.types.is_boolean(kind):
        return _Cast(source, nothing_bad)
    if column_type == "bool" and pa.types.is_integer(kind):
        fits = present & _mask(pc.is_in(source.cast(pa.int64(), safe=False), value_set=pa.array([0, 1])))
        return _Cast(pc.if_else(pa.array(fits), pc.equal(source, 1), None), present & ~fits)
    if column_type == "timestamp" and (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        # A naive timestamp is taken as UTC; nanoseconds are truncated to the stored microseconds.
        naive = source.cast(pa.timestamp("us"), safe=False) if pa.types.is_date(kind) else source
        return _Cast(naive.cast(target, safe=False), nothing_bad)
    return _Cast(pa.nulls(len(source), target), present)


def _stored_as(source: pa.Array) -> str:
    """Say what the file stores the column as, unless it is text (then the quoted values say it all)."""
    kind = source.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return ""
    return f" (the batch stores the column as {kind})"


def _nan_to_null(values: pa.Array) -> pa.Array:
    """NaN is a missing value in a float column (as in pandas), so nullability rules apply to it."""
    return pc.if_else(pc.is_nan(values), None, values)


def _outside(values: pa.Array, low: float | None, high: float | None) -> Mask:
    outside = np.zeros(len(values), dtype=bool)
    if low is not None:
        outside |= _mask(pc.less(values, low))
    if high is not None:
        outside |= _mask(pc.greater(values, high))
    return outside


def _mask(flags: pa.Array | pa.ChunkedArray) -> Mask:
    """A numpy boolean mask; a null flag (comparison with a missing value) counts as False."""
    return np.asarray(pc.fill_null(flags, False).to_numpy(zero_copy_only=False), dtype=bool)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _count(mask: Mask, total: int) -> str:
    return f"{int(mask.sum())} of {total}"


def _rows(mask: Mask) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(row + 1) for row in rows[:EXAMPLES])
    return f"data row{'s' if len(rows) > 1 else ''} {shown}{', …' if len(rows) > EXAMPLES else ''}"


def _examples(values: pa.Array, mask: Mask) -> str:
    rows = np.flatnonzero(mask)
    quoted = values.take(pa.array(rows[:EXAMPLES])).to_pylist()
    shown = ", ".join(
        f"{_show(value)} (data row {row + 1})" for row, value in zip(rows, quoted, strict=False)
    )
    return shown + (", …" if len(rows) > EXAMPLES else "")


def _show(value: Any) -> str:
    if isinstance(value, float):
        return _number(value)
    return repr(quote(value)) if isinstance(value, str) else str(value)


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def _names(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return f"[{shown}{', …' if len(names) > limit else ''}]"
