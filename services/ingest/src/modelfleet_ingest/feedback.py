"""Pure rules of live feedback: which served prediction stands for a request, what row a labelled
prediction becomes, and which of those rows fit their dataset's declared schema.

A joined row is the input row the client sent, plus the label under the model's target column,
plus the model's `where` values for filter columns the input lacks (a model trained on
`market = se` is only ever asked about Swedish rows, so the column is implied). Every value is
turned into text and cast by the same rules as a CSV batch, so feedback rows are held to exactly
the schema every other row of the dataset was.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import JsonValue

from modelfleet_contracts import DataProblem, ModelSpec
from modelfleet_contracts.data import DatasetSchema
from modelfleet_contracts.serving import Route

from .validation import UNEXPECTED_COLUMN, Mask, validate_batch

#: Lower ranks win when several routes answered one request: the champion or challenger answered
#: the client, a shadow only mirrored the request.
ROUTE_RANK: Final[dict[Route, int]] = {"champion": 0, "challenger": 0, "shadow": 1}

#: Provenance columns added to a quarantined file of feedback rows (after the declared columns).
QUARANTINE_COLUMNS: Final = ("feedback_model", "feedback_request_id", "feedback_row")

Scalar = str | int | float | bool


@dataclass(frozen=True)
class FeedbackBinding:
    """What a model's feedback rows are made of: its dataset, target column and row filter."""

    dataset: str
    target: str
    where: Mapping[str, Scalar]

    @classmethod
    def of(cls, spec: ModelSpec) -> FeedbackBinding:
        """The binding a model spec declares."""
        return cls(
            dataset=spec.spec.dataset.name, target=spec.spec.target, where=dict(spec.spec.dataset.where)
        )


@dataclass(frozen=True)
class JoinedRow:
    """A row made of a prediction's input and its label, and the columns the join added."""

    values: dict[str, JsonValue]
    added: tuple[str, ...]  # the target, and `where` columns the input lacked


@dataclass(frozen=True)
class PendingRow:
    """A joined row waiting to be appended to its dataset."""

    id: int
    model: str
    request_id: str
    row: JoinedRow


@dataclass(frozen=True)
class FeedbackSplit:
    """Rows that fit the schema (cast, in declared column order) and rows that do not, with why.

    Row numbers in `problems` count the rejected rows only (data row 1 = `rejected[0]`), which is
    the order of the quarantined file.
    """

    accepted: pa.Table | None
    accepted_rows: list[PendingRow]
    rejected: list[PendingRow]
    problems: list[DataProblem]


def join_row(features: Mapping[str, JsonValue], label: JsonValue, binding: FeedbackBinding) -> JoinedRow:
    """The row a labelled prediction adds to its model's dataset."""
    values: dict[str, JsonValue] = dict(features)
    values[binding.target] = label  # the label is the truth, whatever the client sent under that name
    filled = [column for column in binding.where if column not in features and column != binding.target]
    for column in filled:
        values[column] = binding.where[column]
    return JoinedRow(values=values, added=(binding.target, *filled))


def split_feedback(rows: Sequence[PendingRow], schema: DatasetSchema) -> FeedbackSplit:
    """Check feedback rows against the declared schema, row by row.

    `validate_batch` accepts or refuses a whole batch; feedback rows come from many requests and
    models, so one bad row must not hold back the others: rows with a problem are set apart (and
    their problems reported as of the set-apart rows), the rest are validated again and cast.
    """
    bad, _ = feedback_problems(rows, schema)
    accepted_rows = [row for row, is_bad in zip(rows, bad, strict=True) if not is_bad]
    rejected = [row for row, is_bad in zip(rows, bad, strict=True) if is_bad]
    problems = feedback_problems(rejected, schema)[1] if rejected else []
    accepted: pa.Table | None = None
    if accepted_rows:
        accepted = validate_batch(text_table(accepted_rows, schema), schema).table
        if accepted is None:  # cannot happen: the same rules found nothing wrong with these rows
            raise RuntimeError("feedback rows that passed validation failed it a second time")
    return FeedbackSplit(accepted=accepted, accepted_rows=accepted_rows, rejected=rejected, problems=problems)


def feedback_problems(rows: Sequence[PendingRow], schema: DatasetSchema) -> tuple[Mask, list[DataProblem]]:
    """Which rows break the schema, and every problem (rows counted from 1 in `rows`' order).

    Input keys the schema does not declare are ignored (clients may send request metadata along,
    and serving logs the whole input), but a label or `where` column the schema does not declare
    makes the row unusable: the model's spec and the dataset's disagree.
    """
    declared = {column.name for column in schema.columns}
    undeclared: dict[str, Mask] = {}
    for index, row in enumerate(rows):
        for column in row.row.added:
            if column not in declared:
                undeclared.setdefault(column, np.zeros(len(rows), dtype=bool))[index] = True
    checked = validate_batch(text_table(rows, schema), schema)
    bad = checked.rejected.copy()
    problems: list[DataProblem] = []
    for column, mask in undeclared.items():
        bad |= mask
        models = sorted({rows[int(index)].model for index in np.flatnonzero(mask)})
        problems.append(
            DataProblem(
                column=column,
                code=UNEXPECTED_COLUMN,
                message=(
                    f"{int(mask.sum())} of {len(rows)} feedback rows carry column {column!r}, the target "
                    f"or a `where` column of models {models}, but the Dataset spec does not declare it "
                    f"(declared: {sorted(declared)}): declare it in the Dataset spec, or fix the "
                    "ModelSpec's `target`/`dataset.where`"
                ),
            )
        )
    return bad, problems + checked.problems


def text_table(rows: Sequence[PendingRow], schema: DatasetSchema) -> pa.Table:
    """The rows' declared columns as text (a missing key is an empty cell), in declared order."""
    columns = {
        column.name: pa.array([_text(row.row.values.get(column.name)) for row in rows], pa.string())
        for column in schema.columns
    }
    return pa.table(columns)


def quarantine_parquet(rows: Sequence[PendingRow], schema: DatasetSchema) -> bytes:
    """Parquet bytes of rejected rows: the declared columns as received, then where each row came
    from and the whole joined row as JSON (nothing of it is lost, undeclared columns included)."""
    table = text_table(rows, schema)
    provenance = {
        QUARANTINE_COLUMNS[0]: [row.model for row in rows],
        QUARANTINE_COLUMNS[1]: [row.request_id for row in rows],
        QUARANTINE_COLUMNS[2]: [json.dumps(row.row.values, sort_keys=True) for row in rows],
    }
    for name, values in provenance.items():
        table = table.append_column(name, pa.array(values, pa.string()))
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _text(value: JsonValue) -> str | None:
    """A JSON value as the text a CSV cell would hold; nested values as JSON (a numeric column
    then refuses them, a string column keeps their JSON text)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)
