"""The runs table built from RunRecord's declaration: its DDL is pinned, and a
projection of the record cannot name a column the record does not have."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from qqtui.core.columns import require_projection
from qqtui.core.models import runs_table
from qqtui.core.records import RUN_FIELDS, RunRecord

# The DDL the SQLModel class made before the table was built from the record: a
# changed declaration must not change the schema of existing databases silently.
SQLITE_DDL = (
    "CREATE TABLE runs (\n"
    "\tid INTEGER NOT NULL, \n"
    "\tname VARCHAR NOT NULL, \n"
    "\tagent VARCHAR NOT NULL, \n"
    "\targv JSON NOT NULL, \n"
    "\tcwd VARCHAR NOT NULL, \n"
    "\tenv JSON NOT NULL, \n"
    "\tsession_id VARCHAR NOT NULL, \n"
    "\tstatus VARCHAR NOT NULL, \n"
    "\tattempt INTEGER NOT NULL, \n"
    "\tmax_retries INTEGER NOT NULL, \n"
    "\tretry_on_lost BOOLEAN NOT NULL, \n"
    "\tnot_before FLOAT, \n"
    "\ttimeout_s FLOAT, \n"
    "\thung_after_s FLOAT NOT NULL, \n"
    "\thung BOOLEAN NOT NULL, \n"
    "\tpid INTEGER, \n"
    "\tpid_create_time FLOAT, \n"
    "\tpgid INTEGER, \n"
    "\tshim_pid INTEGER, \n"
    "\tshim_create_time FLOAT, \n"
    "\thost VARCHAR, \n"
    "\tworker_id VARCHAR, \n"
    "\tclaim_token VARCHAR, \n"
    "\tcreated_at FLOAT NOT NULL, \n"
    "\tstarted_at FLOAT, \n"
    "\tfinished_at FLOAT, \n"
    "\theartbeat_at FLOAT, \n"
    "\tactivity_at FLOAT, \n"
    "\texit_code INTEGER, \n"
    "\tsignal INTEGER, \n"
    "\treason TEXT, \n"
    "\tcancel_requested BOOLEAN NOT NULL, \n"
    "\tkill_requested BOOLEAN NOT NULL, \n"
    "\tcancel_grace_s FLOAT, \n"
    "\tstop_cause VARCHAR, \n"
    "\toutput_bytes INTEGER NOT NULL, \n"
    "\tversion INTEGER NOT NULL, \n"
    "\tworkspace TEXT, \n"
    "\tlocks JSON, \n"
    "\tpaths JSON, \n"
    "\tleased BOOLEAN NOT NULL, \n"
    "\tworktree TEXT, \n"
    "\tworktree_repo TEXT, \n"
    "\tworktree_branch VARCHAR, \n"
    "\tkeep_worktree BOOLEAN NOT NULL, \n"
    # schema 4: interactive runs and the waiting flag
    "\ttty BOOLEAN NOT NULL, \n"
    "\ttty_cols INTEGER, \n"
    "\ttty_rows INTEGER, \n"
    "\twaiting BOOLEAN NOT NULL, \n"
    "\twaiting_reason TEXT, \n"
    "\twaiting_since FLOAT, \n"
    "\tPRIMARY KEY (id)\n"
    ")\n"
    "CREATE INDEX ix_runs_queue_leased ON runs (status, leased, id)\n"
    "CREATE INDEX ix_runs_session ON runs (session_id)"
)
# PostgreSQL differs only in how the key counts up.
POSTGRESQL_DDL = SQLITE_DDL.replace("\tid INTEGER NOT NULL", "\tid SERIAL NOT NULL", 1)


def _ddl(dialect: object) -> str:
    statements = [str(CreateTable(runs_table).compile(dialect=dialect)).strip()]
    for index in sorted(runs_table.indexes, key=lambda i: i.name or ""):
        statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    return "\n".join(statements)


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [(sqlite.dialect(), SQLITE_DDL), (postgresql.dialect(), POSTGRESQL_DDL)],
    ids=["sqlite", "postgresql"],
)
def test_the_runs_table_ddl_is_unchanged(dialect: object, expected: str) -> None:
    assert _ddl(dialect) == expected


def test_the_table_columns_are_the_record_fields_in_order() -> None:
    assert tuple(c.name for c in runs_table.columns) == RUN_FIELDS


def test_a_projection_naming_no_column_fails() -> None:
    class Line(NamedTuple):
        id: int
        colour: str

    with pytest.raises(TypeError, match="colour"):
        require_projection(Line, RunRecord)


def test_a_projection_retyping_a_column_fails() -> None:
    class Line(NamedTuple):
        id: str

    with pytest.raises(TypeError, match="id"):
        require_projection(Line, RunRecord)
