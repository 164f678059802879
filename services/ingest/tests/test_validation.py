"""A batch is checked against its declared schema: every problem, per column, with a code and a
message that says how many values, which rows and how to fix it; a valid batch is cast."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelfleet_contracts import ColumnSpec, DataProblem
from modelfleet_contracts.data import DatasetSchema
from modelfleet_ingest.domain import content_version
from modelfleet_ingest.validation import UnreadableBatch, Validation, parse_batch, quote, validate_batch


def check_csv(text: str, schema: DatasetSchema) -> Validation:
    raw = text.encode()
    return validate_batch(parse_batch(raw, "csv", [c.name for c in schema.columns]), schema)


def only(validation: Validation, code: str) -> DataProblem:
    [problem] = [p for p in validation.problems if p.code == code]
    found: DataProblem = problem
    return found


def test_a_declared_column_missing_from_the_batch_is_reported(machines: DatasetSchema) -> None:
    checked = check_csv("machine,failed\nm1,0\n", machines)
    problem = only(checked, "missing_column")
    assert problem.column == "temperature"
    assert problem.message == (
        "column 'temperature' (float) is declared in the Dataset spec but missing from the batch, which "
        "has columns ['machine', 'failed']: add it to the batch, or remove it from the spec"
    )
    assert checked.table is None
    assert checked.rows_rejected == 1


def test_a_column_the_spec_does_not_declare_is_reported(machines: DatasetSchema) -> None:
    problem = only(
        check_csv("machine,temperature,failed,colour\nm1,1,0,red\n", machines), "unexpected_column"
    )
    assert problem.column == "colour"
    assert problem.message == (
        "column 'colour' is in the batch but not declared in the Dataset spec (declared: ['machine', "
        "'temperature', 'failed']): remove it from the batch, or declare it in the spec"
    )


def test_a_column_repeated_in_the_batch_is_reported(machines: DatasetSchema) -> None:
    problem = only(check_csv("machine,temperature,failed,failed\nm1,1,0,1\n", machines), "duplicate_column")
    assert problem.message == "column 'failed' appears 2 times in the batch: keep only one"


def test_values_that_do_not_cast_are_counted_and_quoted_with_their_rows(machines: DatasetSchema) -> None:
    checked = check_csv('machine,temperature,failed\nm1,abc,0\nm2,1.5,1\nm1,"1,5",0\n', machines)
    problem = only(checked, "bad_type")
    assert problem.column == "temperature"
    assert problem.message == (
        "2 of 3 values of column 'temperature' do not cast to float: 'abc' (data row 1), '1,5' (data row 3). "
        "Write numbers with a dot as the decimal separator (e.g. 1.5), or change the column's `type` in "
        "the Dataset spec"
    )
    assert checked.rows_rejected == 2


@pytest.mark.parametrize(
    ("column", "cell", "hint"),
    [
        (ColumnSpec(name="n", type="int"), "2.5", "Write whole numbers"),
        (ColumnSpec(name="n", type="int"), "99999999999999999999", "Write whole numbers"),
        (ColumnSpec(name="n", type="bool"), "maybe", "Write true or false"),
        (ColumnSpec(name="n", type="timestamp"), "yesterday", "Write ISO 8601 timestamps"),
    ],
)
def test_every_declared_type_reports_what_does_not_cast(column: ColumnSpec, cell: str, hint: str) -> None:
    problem = only(check_csv(f"n\n{cell}\n", DatasetSchema(columns=[column])), "bad_type")
    assert f"1 of 1 values of column 'n' do not cast to {column.type}: '{cell}' (data row 1). {hint}" in (
        problem.message
    )


def test_empty_values_in_a_non_nullable_column_are_reported(machines: DatasetSchema) -> None:
    checked = check_csv("machine,temperature,failed\n,NA,1\nm2, ,0\nm1,3,0\n", machines)
    assert [p.column for p in checked.problems] == ["machine", "temperature"]
    assert {p.code for p in checked.problems} == {"null_not_allowed"}
    assert checked.problems[1].message == (
        "2 of 3 values of column 'temperature' are empty (data rows 1, 2) but the column is not nullable: "
        "fill them in, or declare `nullable: true` in the Dataset spec"
    )


def test_values_outside_the_declared_range_are_reported_with_the_extremes(machines: DatasetSchema) -> None:
    problem = only(
        check_csv("machine,temperature,failed\nm1,180.5,0\nm2,20,1\nm1,-60,0\n", machines), "out_of_range"
    )
    assert problem.message == (
        "2 of 3 values of column 'temperature' are outside the declared range [-50, 150]: "
        "180.5 (data row 1), -60 (data row 3); the offending values run from -60 to 180.5. "
        "Fix the values, or widen `min`/`max` in the Dataset spec"
    )


def test_strings_outside_the_declared_categories_are_reported_by_frequency(machines: DatasetSchema) -> None:
    checked = check_csv("machine,temperature,failed\nm9,1,0\nm1,1,0\nm7,1,0\nm9,1,0\n", machines)
    assert only(checked, "unknown_category").message == (
        "3 of 4 values of column 'machine' are not among the declared categories ['m1', 'm2', 'm3']: "
        "'m9' in 2 rows, 'm7' in 1 row (data rows 1, 3, 4). Fix the values, or add them to `categories` "
        "in the Dataset spec"
    )


def test_a_batch_with_several_problems_lists_every_one(machines: DatasetSchema) -> None:
    text = "machine,temperature,failed,extra\nm9,abc,0,x\n,500,maybe,y\nm1,20,1,z\n"
    checked = check_csv(text, machines)
    assert [(p.column, p.code) for p in checked.problems] == [
        ("extra", "unexpected_column"),
        ("machine", "null_not_allowed"),
        ("machine", "unknown_category"),
        ("temperature", "bad_type"),
        ("temperature", "out_of_range"),
        ("failed", "bad_type"),
    ]
    assert checked.rows_rejected == 3  # the column set is wrong: no row can be taken as it is


def test_rows_rejected_counts_each_bad_row_once(machines: DatasetSchema) -> None:
    checked = check_csv("machine,temperature,failed\nm9,abc,0\nm1,20,1\n,500,maybe\n", machines)
    assert len(checked.problems) == 5
    assert checked.rows_rejected == 2


def test_text_is_cast_to_the_declared_types_and_blank_or_null_spellings_are_missing() -> None:
    schema = DatasetSchema(
        columns=[
            ColumnSpec(name="region", type="string", nullable=True),
            ColumnSpec(name="count", type="int", nullable=True),
            ColumnSpec(name="ratio", type="float", nullable=True),
            ColumnSpec(name="ok", type="bool", nullable=True),
            ColumnSpec(name="at", type="timestamp", nullable=True),
        ]
    )
    text = (
        "region,count,ratio,ok,at\n"
        "NA,+007.0, 1e3 ,Yes,2024-05-01\n"
        ",-12,NaN,f,2024-05-01T12:00:00+02:00\n"
        "eu,,-inf,,null\n"
    )
    checked = check_csv(text, schema)
    assert checked.problems == []
    assert checked.table is not None
    assert checked.table.to_pydict() == {
        "region": ["NA", None, "eu"],  # in a string column only an empty cell is missing
        "count": [7, -12, None],
        "ratio": [1000.0, None, float("-inf")],
        "ok": [True, False, None],
        "at": [datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 1, 10, tzinfo=UTC), None],
    }
    assert [str(f.type) for f in checked.table.schema] == [
        "string",
        "int64",
        "double",
        "bool",
        "timestamp[us, tz=UTC]",
    ]


def test_typed_parquet_columns_are_cast_and_checked_too() -> None:
    schema = DatasetSchema(columns=[ColumnSpec(name="n", type="int"), ColumnSpec(name="flag", type="bool")])
    fits = validate_batch(pa.table({"n": [1.0, 2.0], "flag": pa.array([0, 1], pa.int8())}), schema)
    assert fits.table is not None
    assert fits.table.to_pydict() == {"n": [1, 2], "flag": [False, True]}
    broken = validate_batch(pa.table({"n": [1.0, 2.5], "flag": ["x", "true"]}), schema)
    assert [(p.column, p.code) for p in broken.problems] == [("n", "bad_type"), ("flag", "bad_type")]
    assert "2.5 (data row 2) (the batch stores the column as double)" in broken.problems[0].message


def test_the_columns_are_stored_in_declared_order(machines: DatasetSchema) -> None:
    checked = check_csv("failed,machine,temperature\n0,m1,3\n", machines)
    assert checked.table is not None
    assert checked.table.column_names == ["machine", "temperature", "failed"]


def test_casting_makes_csv_and_parquet_of_the_same_rows_the_same_version(machines: DatasetSchema) -> None:
    from_csv = check_csv("machine,temperature,failed\nm1,71.5,0\nm2,99,1\n", machines).table
    typed = pa.table(
        {"failed": [False, True], "machine": ["m1", "m2"], "temperature": pa.array([71.5, 99.0])}
    )
    sink = pa.BufferOutputStream()
    pq.write_table(typed, sink, row_group_size=1)  # other column order, other chunking
    from_parquet = validate_batch(parse_batch(sink.getvalue().to_pybytes(), "parquet"), machines).table
    assert from_csv is not None
    assert from_parquet is not None
    assert content_version(from_csv) == content_version(from_parquet)


def test_bytes_that_are_not_the_claimed_format_are_unreadable() -> None:
    with pytest.raises(UnreadableBatch, match="cannot read the batch as parquet"):
        parse_batch(b"definitely not parquet", "parquet")


def test_a_row_pyarrow_cannot_parse_is_not_quoted() -> None:
    with pytest.raises(UnreadableBatch) as unreadable:
        parse_batch(b"a,b\nFLEET_KAFKA_SASL_PASSWORD=s3cret,1,2\n", "csv")
    assert str(unreadable.value) == (
        "cannot read the batch as csv: CSV parse error: Expected 2 columns, got 3 (the row is not quoted)"
    )


@pytest.mark.parametrize(
    "text",
    [
        "FLEET_KAFKA_SASL_PASSWORD=s3cret",
        "export AWS_SECRET_ACCESS_KEY=abc",
        "db_password: hunter2",
        "api-key=abc",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    ],
)
def test_text_that_looks_like_a_credential_is_never_quoted(text: str, machines: DatasetSchema) -> None:
    assert quote(text) == "<redacted: looks like a credential>"
    checked = check_csv(f"machine,temperature,failed\n{text},1,0\n", machines)
    assert text not in only(checked, "unknown_category").message


def test_ordinary_values_are_quoted_but_cut_when_long(machines: DatasetSchema) -> None:
    assert quote("token") == "token"
    assert quote("x" * 100) == "x" * 60 + "…"
    checked = check_csv(f"machine,temperature,failed,{'c' * 100}\nm1,1,0,1\n", machines)
    assert f"column '{'c' * 60}…' is in the batch" in only(checked, "unexpected_column").message
