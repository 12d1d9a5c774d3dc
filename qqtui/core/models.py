"""The job table: SQLModel tables for runs, their events, and the workers that run them."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Index, Text
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 1


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_claim", "status", "not_before", "id"),
        Index("ix_runs_worker", "worker_id", "status"),
        Index("ix_runs_session", "session_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = ""
    agent: str = "default"
    argv: list[str] = Field(sa_column=Column(JSON, nullable=False))
    cwd: str
    env: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    session_id: str
    status: str = "queued"
    attempt: int = 1
    max_retries: int = 0
    not_before: float | None = None
    timeout_s: float | None = None
    hung_after_s: float = 300.0
    hung: bool = False
    pid: int | None = None
    pid_create_time: float | None = None
    pgid: int | None = None
    shim_pid: int | None = None
    shim_create_time: float | None = None
    host: str | None = None
    worker_id: str | None = None
    claim_token: str | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    activity_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = Field(default=None, sa_column=Column(Text))
    cancel_requested: bool = False
    kill_requested: bool = False
    cancel_grace_s: float | None = None
    stop_cause: str | None = None
    output_bytes: int = 0
    version: int = 1


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


class MetaRow(SQLModel, table=True):
    __tablename__ = "qqtui_meta"

    key: str = Field(primary_key=True)
    value: str


runs_table = RunRow.__table__  # type: ignore[attr-defined]
events_table = EventRow.__table__  # type: ignore[attr-defined]
workers_table = WorkerRow.__table__  # type: ignore[attr-defined]
meta_table = MetaRow.__table__  # type: ignore[attr-defined]
