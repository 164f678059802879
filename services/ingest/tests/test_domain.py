"""A version is named by its content; its reference profile summarises every column for drift."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from modelfleet_ingest.domain import content_version, infer_format, reference_profile


def test_the_format_comes_from_the_declaration_or_the_suffix() -> None:
    assert infer_format("s3://bucket/x.PARQUET", None) == "parquet"
    assert infer_format("/data/x.txt", "csv") == "csv"
    with pytest.raises(ValueError, match=r"cannot tell the format of '/data/x\.txt'"):
        infer_format("/data/x.txt", None)


def test_the_version_depends_on_the_rows_not_on_chunks_or_metadata() -> None:
    table = pa.table({"x": [1, None, 3], "s": ["a", None, "ccc"]})
    rechunked = pa.concat_tables([table.slice(0, 1), table.slice(1)])
    with_metadata = table.replace_schema_metadata({b"pandas": b"{}"})
    assert content_version(rechunked) == content_version(table) == content_version(with_metadata)


@pytest.mark.parametrize(
    "other",
    [
        pa.table({"x": [1, None, 4], "s": ["a", None, "ccc"]}),  # a value
        pa.table({"x": [1, 0, 3], "s": ["a", None, "ccc"]}),  # a null became a zero
        pa.table({"x": [1, None, 3], "s": ["a", "", "ccc"]}),  # a null became an empty string
        pa.table({"x": [1, None, 3], "s": ["ab", None, "cc"]}),  # same bytes, other boundaries
        pa.table({"y": [1, None, 3], "s": ["a", None, "ccc"]}),  # a column name
        pa.table({"x": pa.array([1, None, 3], pa.int32()), "s": ["a", None, "ccc"]}),  # a type
    ],
)
def test_any_change_of_content_changes_the_version(other: pa.Table) -> None:
    assert content_version(other) != content_version(pa.table({"x": [1, None, 3], "s": ["a", None, "ccc"]}))


def test_the_profile_of_a_numeric_column_has_counts_moments_deciles_and_a_histogram() -> None:
    table = pa.table({"n": pa.array([*range(10, 0, -1), None], pa.int64())})
    profile = reference_profile(table, dataset="d", version="v1")
    column = profile["columns"]["n"]
    assert profile["profile_version"] == 2
    assert (profile["dataset"], profile["version"], profile["row_count"]) == ("d", "v1", 11)
    assert column["kind"] == "numeric"
    assert (column["count"], column["null_count"], column["infinite_count"]) == (10, 1, 0)
    assert column["mean"] == 5.5
    assert column["std"] == pytest.approx(math.sqrt(8.25))  # population std of 1..10
    assert (column["min"], column["max"]) == (1.0, 10.0)
    deciles = [1 + 0.9 * step for step in range(11)]
    assert column["quantiles"]["probabilities"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert column["quantiles"]["values"] == pytest.approx(deciles)
    assert column["histogram"]["edges"] == pytest.approx(deciles)
    assert column["histogram"]["counts"] == [1] * 10


def test_drift_bins_give_each_value_of_a_discrete_column_its_own_bin_with_counts_and_means() -> None:
    column = reference_profile(
        pa.table({"calls": [0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 5.0, 5.0, 5.0, 5.0]}), dataset="d", version="v"
    )["columns"]["calls"]
    assert column["drift_bins"] == {
        "edges": [0.0, 1.0, 2.0],
        "counts": [3, 2, 1, 4],
        "means": [0.0, 1.0, 2.0, 5.0],
    }


def test_drift_bins_of_a_continuous_column_hold_about_equal_mass() -> None:
    values = np.random.default_rng(7).normal(size=5000)
    bins = reference_profile(pa.table({"x": values}), dataset="d", version="v")["columns"]["x"]["drift_bins"]
    assert len(bins["counts"]) == len(bins["edges"]) + 1 == 200
    assert sum(bins["counts"]) == 5000
    assert 24 <= min(bins["counts"]) <= max(bins["counts"]) <= 26
    assert bins["means"][0] < bins["edges"][0] < bins["means"][1]


def test_repeated_deciles_make_one_edge_and_a_constant_column_one_bin() -> None:
    skewed = [0.0] * 8 + [5.0, 10.0]
    profile = reference_profile(
        pa.table({"skewed": skewed, "constant": [2.0] * 10}), dataset="d", version="v"
    )
    histogram = profile["columns"]["skewed"]["histogram"]
    assert histogram["edges"][0] == 0.0
    assert len(histogram["edges"]) == len(set(histogram["edges"]))
    assert sum(histogram["counts"]) == 10
    assert profile["columns"]["constant"]["histogram"] == {"edges": [2.0, 2.0], "counts": [10]}


def test_infinite_values_are_counted_but_kept_out_of_the_statistics() -> None:
    column = reference_profile(pa.table({"x": [1.0, 3.0, float("inf")]}), dataset="d", version="v")[
        "columns"
    ]["x"]
    assert (column["count"], column["infinite_count"], column["mean"], column["max"]) == (3, 1, 2.0, 3.0)


def test_the_profile_of_strings_and_bools_counts_each_value_most_frequent_first() -> None:
    table = pa.table(
        {"colour": ["red", "blue", None, "red", "green", "blue", "red"], "ok": [True, False] * 3 + [True]}
    )
    columns = reference_profile(table, dataset="d", version="v")["columns"]
    assert columns["colour"] == {
        "kind": "categorical",
        "type": "string",
        "count": 6,
        "null_count": 1,
        "distinct_count": 3,
        "frequencies": {"red": 3, "blue": 2, "green": 1},
        "other_count": 0,
    }
    assert columns["ok"]["frequencies"] == {"true": 4, "false": 3}


def test_the_profile_of_a_timestamp_column_has_its_range() -> None:
    moments = pa.array([datetime(2024, 5, 2, tzinfo=UTC), None, datetime(2024, 5, 1, tzinfo=UTC)])
    column = reference_profile(pa.table({"at": moments}), dataset="d", version="v")["columns"]["at"]
    assert column == {
        "kind": "timestamp",
        "type": "timestamp[us, tz=UTC]",
        "count": 2,
        "null_count": 1,
        "min": "2024-05-01T00:00:00+00:00",
        "max": "2024-05-02T00:00:00+00:00",
    }


def test_a_column_without_values_has_an_empty_profile_that_is_still_strict_json() -> None:
    table = pa.table({"x": pa.array([None, None], pa.float64())})
    profile = reference_profile(table, dataset="d", version="v")
    column = profile["columns"]["x"]
    assert (column["count"], column["mean"], column["histogram"]) == (0, None, {"edges": [], "counts": []})
    assert json.loads(json.dumps(profile, allow_nan=False)) == profile
