"""The job table: the runs table built from RunRecord's declaration, and the SQLModel
tables for their events, the workers that run them, output tails and schema facts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)
from sqlmodel import Field, SQLModel

from qqtui.core.columns import NO_DEFAULT, StoredField
from qqtui.core.records import RUN_STORED_FIELDS

# 2: runs.retry_on_lost, workers.clock_skew_s, the run_outputs table (multi-host mode).
# 3: runs.workspace, locks, paths, leased (conflict-aware claim) and the worktree columns.
# 4: runs.tty, tty_cols, tty_rows (interactive runs) and waiting, waiting_reason,
#    waiting_since (the "needs you" flag).
SCHEMA_VERSION = 4


# The run's columns are declared once, as RunRecord's fields (records.py, stdlib so
# the CLI's read paths need no SQLAlchemy). The runs table is built from them as a
# plain SQLAlchemy Core table on SQLModel's metadata, so create_all makes it with the
# other tables. Not an SQLModel class: the store never instantiates table rows (it
# speaks Core and driver SQL and hands out RunRecords), so a generated class would
# be a second, unused model of the same columns.
_KINDS: dict[str, Any] = {
    "integer": Integer,
    "float": Float,
    "boolean": Boolean,
    "string": String,  # VARCHAR, as SQLModel's AutoString compiles on SQLite and PostgreSQL
    "text": Text,
    "json": JSON,
}


def _column(field: StoredField) -> Column[Any]:
    extra: dict[str, Any] = {}
    if field.insert_default is not NO_DEFAULT:
        extra["default"] = field.insert_default
    return Column(
        field.name,
        _KINDS[field.kind],
        primary_key=field.primary_key,
        nullable=field.nullable,
        **extra,
    )


runs_table = Table(
    "runs",
    SQLModel.metadata,
    *(_column(field) for field in RUN_STORED_FIELDS),
    # Every index holding `status` is rewritten by every transition, and on SQLite a
    # claim's commit costs about one page write per index it touches: keep them few.
    # Queries by worker or host always ask for running runs too, which the status
    # prefix of these indexes already narrows to a handful of rows.
    #
    # The claim walks the queue in id order: "is any leased run due?" (asked by
    # every claim), the unleased claim's `leased = false ORDER BY id`, and the
    # lease-aware claim's two id-ordered ranges all read this index in order
    # (without it every claim sorted the whole queue: 4 ms at 20,000 queued). Its
    # status prefix also finds the running runs of a worker or host.
    Index("ix_runs_queue_leased", "status", "leased", "id"),
    Index("ix_runs_session", "session_id"),
)
# Indexes of earlier versions that cost every transition more than they saved; the
# store drops them from existing databases (an older qqtui re-creates them: harmless).
RETIRED_RUN_INDEXES = ("ix_runs_claim", "ix_runs_worker", "ix_runs_queue_order")


class EventRow(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_run", "run_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int
    at: float
    kind: str = "transition"
    from_status: str | None = None
    to_status: str | None = None
    reason: str | None = Field(default=None, sa_column=Column(Text))
    actor: str | None = None
    host: str | None = None


class WorkerRow(SQLModel, table=True):
    __tablename__ = "workers"

    id: str = Field(primary_key=True)
    host: str
    pid: int
    pid_create_time: float
    boot_id: str
    started_at: float
    heartbeat_at: float
    stopped_at: float | None = None
    # The worker's wall clock minus the database server's, in seconds (None on SQLite,
    # where the store's clock is the host's own).
    clock_skew_s: float | None = None


class RunOutputRow(SQLModel, table=True):
    """The tail of a running run's output, kept by its worker for TUIs on other hosts.

    A table of its own so that listing runs never drags 64 KiB per row along.
    """

    __tablename__ = "run_outputs"

    run_id: int = Field(primary_key=True)
    attempt: int
    host: str
    log_path: str = Field(sa_column=Column(Text, nullable=False))
    size: int  # bytes of output written so far; the tail is the last bytes of these
    tail: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    updated_at: float


class MetaRow(SQLModel, table=True):
    __tablename__ = "qqtui_meta"

    key: str = Field(primary_key=True)
    value: str


events_table = EventRow.__table__  # type: ignore[attr-defined]
workers_table = WorkerRow.__table__  # type: ignore[attr-defined]
meta_table = MetaRow.__table__  # type: ignore[attr-defined]
run_outputs_table = RunOutputRow.__table__  # type: ignore[attr-defined]
