"""An ingest from before the state engine kept its state in three SQLite files of its state dir:
the first start on the state engine adopts them, once, so no dataset forgets its latest version
and no joined row waiting for a flush is lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from modelfleet_contracts import ColumnSpec, DatasetSpec
from modelfleet_contracts.data import DatasetMetadata, DatasetSchema
from modelfleet_ingest.bootstrap import bootstrap
from modelfleet_ingest.config import IngestSettings
from modelfleet_ingest.feedback_state import SqlFeedbackState, WaitingPrediction
from modelfleet_ingest.legacy import adopt_legacy_state

from .conftest import Published

# The schemas of those files, as they were (services/ingest state.py and feedback_state.py).
OLD_STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS dataset_specs (
    dataset     TEXT PRIMARY KEY,
    revision    TEXT NOT NULL,
    spec_json   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    applied_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS applied_spec_events (
    event_id   TEXT PRIMARY KEY,
    dataset    TEXT NOT NULL,
    revision   TEXT NOT NULL,
    applied_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dataset_versions (
    dataset       TEXT NOT NULL,
    version       TEXT NOT NULL,
    uri           TEXT NOT NULL,
    profile_uri   TEXT NOT NULL,
    row_count     INTEGER NOT NULL,
    columns_json  TEXT NOT NULL,
    spec_revision TEXT NOT NULL,
    created_at    REAL NOT NULL,
    PRIMARY KEY (dataset, version)
);
CREATE TABLE IF NOT EXISTS latest_versions (
    dataset    TEXT PRIMARY KEY,
    version    TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_outcomes (
    event_id    TEXT PRIMARY KEY,
    dataset     TEXT NOT NULL,
    version     TEXT NOT NULL,
    mode        TEXT NOT NULL,
    recorded_at REAL NOT NULL
);
"""

OLD_FEEDBACK_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback_bindings (
    model      TEXT PRIMARY KEY,
    dataset    TEXT NOT NULL,
    target     TEXT NOT NULL,
    where_json TEXT NOT NULL,
    revision   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS waiting_predictions (
    model         TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    route_rank    INTEGER NOT NULL,
    version       TEXT NOT NULL,
    features_json TEXT NOT NULL,
    predicted_at  REAL NOT NULL,
    PRIMARY KEY (model, request_id)
);
CREATE INDEX IF NOT EXISTS waiting_predictions_by_age ON waiting_predictions (model, predicted_at);
CREATE INDEX IF NOT EXISTS waiting_predictions_expiry ON waiting_predictions (predicted_at);
CREATE TABLE IF NOT EXISTS waiting_labels (
    model       TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    label_json  TEXT NOT NULL,
    observed_at REAL NOT NULL,
    PRIMARY KEY (model, request_id)
);
CREATE INDEX IF NOT EXISTS waiting_labels_by_age ON waiting_labels (model, observed_at);
CREATE INDEX IF NOT EXISTS waiting_labels_expiry ON waiting_labels (observed_at);
CREATE TABLE IF NOT EXISTS feedback_rows (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    model      TEXT NOT NULL,
    request_id TEXT NOT NULL,
    dataset    TEXT NOT NULL,
    row_json   TEXT NOT NULL,
    added_json TEXT NOT NULL,
    flush      TEXT,
    joined_at  REAL NOT NULL,
    UNIQUE (model, request_id)
);
CREATE INDEX IF NOT EXISTS feedback_rows_by_dataset ON feedback_rows (dataset, flush);
CREATE TABLE IF NOT EXISTS settled_requests (
    model      TEXT NOT NULL,
    request_id TEXT NOT NULL,
    settled_at REAL NOT NULL,
    PRIMARY KEY (model, request_id)
);
CREATE INDEX IF NOT EXISTS settled_requests_expiry ON settled_requests (settled_at);
"""

SPEC = DatasetSpec(
    metadata=DatasetMetadata(name="plants"), spec=DatasetSchema(columns=[ColumnSpec(name="x", type="float")])
)


ROW = '{"x": 2, "failed": true}'


def old_files(state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    with sqlite3.connect(state_dir / "ingest-state.sqlite") as db:
        db.executescript(OLD_STATE_SCHEMA)
        db.execute(
            "INSERT INTO dataset_specs VALUES ('plants', 'r1', ?, 'event-1', '2024-05-01T00:00', 1.0)",
            (SPEC.model_dump_json(by_alias=True),),
        )
        db.execute("INSERT INTO applied_spec_events VALUES ('event-1', 'plants', 'r1', 1.0)")
        db.execute(
            "INSERT INTO dataset_versions VALUES "
            "('plants', 'v1', '/d/v1.parquet', '/d/v1.profile.json', 2, '[[\"x\", \"double\"]]', 'r1', 1.0)"
        )
        db.execute("INSERT INTO latest_versions VALUES ('plants', 'v1', 'feedback:plants:8-9', 1.0)")
        db.execute("INSERT INTO batch_outcomes VALUES ('batch-1', 'plants', 'v1', 'replace', 1.0)")
    with sqlite3.connect(state_dir / "ingest-feedback.sqlite") as db:
        db.executescript(OLD_FEEDBACK_SCHEMA)
        db.execute("INSERT INTO feedback_bindings VALUES ('m', 'plants', 'failed', '{}', 'r1')")
        db.execute("INSERT INTO waiting_predictions VALUES ('m', 'q1', 0, '1', '{\"x\": 1}', 1.0)")
        # Rows 8 and 9 were flushed and settled; row 7 was claimed by a flush that failed.
        for row_id in (7, 8, 9):
            db.execute(
                "INSERT INTO feedback_rows (id, model, request_id, dataset, row_json, added_json, flush, "
                "joined_at) VALUES (?, 'm', ?, 'plants', ?, '[\"failed\"]', ?, 1.0)",
                (row_id, f"q{row_id}", ROW, "feedback:plants:7-7" if row_id == 7 else None),
            )
        db.execute("DELETE FROM feedback_rows WHERE id IN (8, 9)")
        db.execute("INSERT INTO settled_requests VALUES ('m', 'q8', 1.0), ('m', 'q9', 1.0)")
    with sqlite3.connect(state_dir / "ingest-handled.sqlite") as db:
        db.execute("CREATE TABLE handled (key TEXT PRIMARY KEY, at REAL NOT NULL)")
        db.execute("INSERT INTO handled VALUES ('version:plants:v1', 9e9)")


def test_the_first_start_on_the_state_engine_adopts_the_old_files_once(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    old_files(state_dir)
    settings = IngestSettings(state_dir=state_dir, data_dir=str(tmp_path / "data"))

    deps = bootstrap(settings, publish=Published())

    declared = deps.state.spec("plants")
    assert declared is not None
    assert declared.revision == "r1"
    latest = deps.state.latest_version("plants")
    assert latest is not None
    assert (latest.version, latest.columns) == ("v1", [("x", "double")])
    assert deps.state.batch_outcome("batch-1") == latest
    assert deps.handled.seen("version:plants:v1")
    feedback = deps.feedback
    assert isinstance(feedback, SqlFeedbackState)
    assert feedback.waiting("m") == (1, 0)
    claim = feedback.claim("plants", now=2.0)
    assert claim is not None
    assert (claim.flush, [row.request_id for row in claim.rows]) == ("feedback:plants:7-7", ["q7"])
    feedback.settle(claim.flush, now=2.0)
    # Settled before the upgrade: a redelivered label of q8 joins nothing.
    assert feedback.add_label("m", "q8", True, observed_at=2, now=2, max_waiting=10).joined == 0
    # A new row's id comes after every id the old file gave: its claim is not named as an old flush.
    feedback.add_predictions("m", [WaitingPrediction("q10", 0, "1", {"x": 3}, 2.0)], now=2, max_waiting=10)
    feedback.add_label("m", "q10", False, observed_at=2, now=2, max_waiting=10)
    following = feedback.claim("plants", now=3.0)
    assert following is not None
    assert following.flush == "feedback:plants:10-10"

    assert sorted(path.name for path in state_dir.iterdir() if "adopted" in path.name) == [
        "ingest-feedback.sqlite.adopted",
        "ingest-handled.sqlite.adopted",
    ]
    with sqlite3.connect(state_dir / "ingest-state.sqlite") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not tables & {"dataset_specs", "latest_versions", "dataset_versions", "batch_outcomes"}
    assert deps.state_engine is not None
    assert adopt_legacy_state(deps.state_engine, state_dir) == {}  # once
    deps.state_engine.close()
