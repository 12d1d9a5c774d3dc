"""The job table: SQLModel tables for runs, their events, and the workers that run them."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Index, LargeBinary, Text
from sqlmodel import Field, SQLModel

# 2: runs.retry_on_lost, workers.clock_skew_s, the run_outputs table (multi-host mode).
# 3: runs.workspace, locks, paths, leased (conflict-aware claim) and the worktree columns.
SCHEMA_VERSION = 3


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    # Every index holding `status` is rewritten by every transition, and on SQLite a
    # claim's commit costs about one page write per index it touches: keep them few.
    # Queries by worker or host always ask for running runs too, which the status
    # prefix of these indexes already narrows to a handful of rows.
    __table_args__ = (
        # The claim walks the queue in id order: "is any leased run due?" (asked by
        # every claim), the unleased claim's `leased = false ORDER BY id`, and the
        # lease-aware claim's two id-ordered ranges all read this index in order
        # (without it every claim sorted the whole queue: 4 ms at 20,000 queued). Its
        # status prefix also finds the running runs of a worker or host.
        Index("ix_runs_queue_leased", "status", "leased", "id"),
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
    # Requeue (as the next attempt, counted against max_retries) when the run's worker
    # is declared dead by a rescue; off by default because the command may have had
    # side effects before its worker vanished.
    retry_on_lost: bool = False
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
    # Leases held while running (see leases.py): the real path of the cwd (None with
    # --shared-workspace or --paths), lock names, absolute path globs. `leased` says
    # whether any is set, so the claim can keep its one-statement path for the rest.
    workspace: str | None = Field(default=None, sa_column=Column(Text))
    locks: list[str] | None = Field(default=None, sa_column=Column(JSON))
    paths: list[str] | None = Field(default=None, sa_column=Column(JSON))
    leased: bool = False
    # A run in its own git worktree (workspaces.py): the worktree is its cwd.
    worktree: str | None = Field(default=None, sa_column=Column(Text))
    worktree_repo: str | None = Field(default=None, sa_column=Column(Text))
    worktree_branch: str | None = None
    keep_worktree: bool = False


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


runs_table = RunRow.__table__  # type: ignore[attr-defined]
# Indexes of earlier versions that cost every transition more than they saved; the
# store drops them from existing databases (an older qqtui re-creates them: harmless).
RETIRED_RUN_INDEXES = ("ix_runs_claim", "ix_runs_worker", "ix_runs_queue_order")
events_table = EventRow.__table__  # type: ignore[attr-defined]
workers_table = WorkerRow.__table__  # type: ignore[attr-defined]
meta_table = MetaRow.__table__  # type: ignore[attr-defined]
run_outputs_table = RunOutputRow.__table__  # type: ignore[attr-defined]
