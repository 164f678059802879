"""Adopting the state of an ingest from before the state engine (#12), once, on SQLite.

That ingest kept its state in three hand-written SQLite files of its state dir: `ingest-state.sqlite`
(specs, versions, batch outcomes; the file the embedded state engine now opens, so those tables
sit next to the engine's), `ingest-feedback.sqlite` (the feedback join) and `ingest-handled.sqlite`
(idempotency marks). Without them an upgraded ingest would forget every dataset's latest version
(an `append` or a feedback flush would start a dataset afresh) and the labelled rows not yet
flushed. `adopt_legacy_state` copies them into the engine's tables in one transaction per file,
then drops the old tables and renames the old files `*.adopted`; a second call finds nothing.
On PostgreSQL nothing is adopted (the files are named in a warning).
Columns are the same, row ids and claim names included; the row id sequence is carried over, so
a new claim can never take the name of a flush of the old file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from modelfleet_common.state import HANDLED, StateEngine

from .tables import (
    APPLIED_SPEC_EVENTS,
    BATCH_OUTCOMES,
    DATASET_SPECS,
    DATASET_VERSIONS,
    FEEDBACK_BINDINGS,
    FEEDBACK_ROWS,
    LATEST_VERSIONS,
    METADATA,
    SETTLED_REQUESTS,
    WAITING_LABELS,
    WAITING_PREDICTIONS,
)

logger = logging.getLogger("modelfleet.ingest")

STATE_FILE = "ingest-state.sqlite"
FEEDBACK_FILE = "ingest-feedback.sqlite"
HANDLED_FILE = "ingest-handled.sqlite"

#: Old table name → its new table, per old file.
_STATE_TABLES = {
    "dataset_specs": DATASET_SPECS,
    "applied_spec_events": APPLIED_SPEC_EVENTS,
    "dataset_versions": DATASET_VERSIONS,
    "latest_versions": LATEST_VERSIONS,
    "batch_outcomes": BATCH_OUTCOMES,
}
_FEEDBACK_TABLES = {
    "feedback_bindings": FEEDBACK_BINDINGS,
    "waiting_predictions": WAITING_PREDICTIONS,
    "waiting_labels": WAITING_LABELS,
    "feedback_rows": FEEDBACK_ROWS,
    "settled_requests": SETTLED_REQUESTS,
}
_HANDLED_TABLES = {"handled": HANDLED}


_FILES = ((STATE_FILE, _STATE_TABLES), (FEEDBACK_FILE, _FEEDBACK_TABLES), (HANDLED_FILE, _HANDLED_TABLES))


def adopt_legacy_state(engine: StateEngine, state_dir: Path) -> dict[str, int]:
    """Copy what the old files of `state_dir` hold into `engine` (SQLite only); returns the rows
    copied per old table (empty when there was nothing to adopt)."""
    if engine.engine.dialect.name != "sqlite":
        if left := [name for name, _ in _FILES if (state_dir / name).is_file()]:
            logger.warning(
                "files of an ingest from before the state engine are in the state dir; they are not "
                "adopted into a shared engine (a fleet scaled out starts from the topics instead)",
                extra={"state_dir": str(state_dir), "files": left},
            )
        return {}
    engine.create_tables(METADATA)
    copied: dict[str, int] = {}
    with engine.engine.connect() as connection:
        main = _main_file(connection)
        for name, tables in _FILES:
            path = state_dir / name
            if not path.is_file():
                continue
            same_file = main is not None and path.resolve() == main
            copied |= _adopt(connection, None if same_file else path, tables)
            if not same_file:
                path.rename(path.with_name(f"{name}.adopted"))
    if copied:
        logger.warning("ingest state of the files before the state engine adopted", extra={"rows": copied})
    return copied


def _main_file(connection: Connection) -> Path | None:
    for _, name, file in connection.exec_driver_sql("PRAGMA database_list").all():
        if name == "main" and file:
            return Path(file).resolve()
    return None


def _adopt(connection: Connection, path: Path | None, tables: dict[str, sa.Table]) -> dict[str, int]:
    """Copy the old tables of `path` (None: of the engine's own file) that exist; drop them there."""
    schema = "main" if path is None else "legacy"
    if path is not None:
        # Outside a transaction: SQLite attaches no database within one.
        connection.exec_driver_sql("ATTACH DATABASE ? AS legacy", (str(path),))
    copied: dict[str, int] = {}
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        listed = connection.exec_driver_sql(f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'")
        present = {row[0] for row in listed}
        for old, table in tables.items():
            if old not in present:
                continue
            kept = _old_columns(connection, schema, old)
            columns = ", ".join(f'"{column.name}"' for column in table.columns if column.name in kept)
            result = connection.exec_driver_sql(
                f'INSERT OR IGNORE INTO main."{table.name}" ({columns}) '
                f'SELECT {columns} FROM {schema}."{old}"'
            )
            copied[old] = int(result.rowcount or 0)
            if old == "feedback_rows" and "sqlite_sequence" in present:
                _carry_sequence(connection, schema, old, table.name)
            if path is None:
                connection.exec_driver_sql(f'DROP TABLE main."{old}"')
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        if path is not None:
            connection.exec_driver_sql("DETACH DATABASE legacy")
    return copied


def _old_columns(connection: Connection, schema: str, table: str) -> set[str]:
    return {row[1] for row in connection.exec_driver_sql(f'PRAGMA {schema}.table_info("{table}")')}


def _carry_sequence(connection: Connection, schema: str, old: str, new: str) -> None:
    """The new table's row ids continue after every id the old one ever gave, settled ones too."""
    given = connection.exec_driver_sql(
        f"SELECT seq FROM {schema}.sqlite_sequence WHERE name = ?", (old,)
    ).scalar_one_or_none()
    if given is None:
        return
    current = connection.exec_driver_sql(
        "SELECT seq FROM main.sqlite_sequence WHERE name = ?", (new,)
    ).scalar_one_or_none()
    if current is None:
        connection.exec_driver_sql(
            "INSERT INTO main.sqlite_sequence (name, seq) VALUES (?, ?)", (new, int(given))
        )
    elif int(current) < int(given):
        connection.exec_driver_sql(
            "UPDATE main.sqlite_sequence SET seq = ? WHERE name = ?", (int(given), new)
        )
