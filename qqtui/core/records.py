"""Run states, their allowed transitions, and the frozen records core hands out.

Stdlib only: the CLI's read paths and the agent kit import this without paying
for SQLAlchemy.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from qqtui.core.columns import column, stored_fields
from qqtui.core.errors import (  # re-exported: records is where callers look for them
    IllegalTransitionError,
    NotFoundError,
    QqError,
    StaleClaimError,
    UpdateConflictError,
)

__all__ = [
    "CLOCK_SKEW_WARN_S",
    "DEFAULT_GRACE_S",
    "FINAL_STATUSES",
    "MAX_RETRIES",
    "RUN_FIELDS",
    "RUN_STORED_FIELDS",
    "TRANSITIONS",
    "EventRecord",
    "IllegalTransitionError",
    "NotFoundError",
    "OutputTail",
    "QqError",
    "RunRecord",
    "StaleClaimError",
    "Status",
    "UpdateConflictError",
    "WorkerRecord",
    "Worktree",
    "transition_allowed",
]


# A worker whose clock differs from the database server's by this much is flagged.
CLOCK_SKEW_WARN_S = 60.0

# Stopping a run: TERM its tree, wait this long, KILL what is left. A cancel's default
# (CLI, app) and a worker's for timeouts and --stop-runs.
DEFAULT_GRACE_S = 10.0

# More retries than this is a typo, not a plan (and the column is a 64-bit integer).
MAX_RETRIES = 1000


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    LOST = "lost"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT, Status.LOST}
)

# The one place the state machine is written down. `running -> queued` is a retry
# of a failed attempt (attempt + 1); `final -> queued` is a user's `retry`.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED}),
    Status.RUNNING: frozenset(
        {
            Status.SUCCEEDED,
            Status.FAILED,
            Status.CANCELLED,
            Status.TIMED_OUT,
            Status.LOST,
            Status.QUEUED,
        }
    ),
    Status.SUCCEEDED: frozenset({Status.QUEUED}),
    Status.FAILED: frozenset({Status.QUEUED}),
    Status.CANCELLED: frozenset({Status.QUEUED}),
    Status.TIMED_OUT: frozenset({Status.QUEUED}),
    Status.LOST: frozenset({Status.QUEUED}),
}


def transition_allowed(old: Status | None, new: Status) -> bool:
    """Whether `old -> new` is a legal move (`None` is a run being created)."""
    if old is None:
        return new is Status.QUEUED
    return new in TRANSITIONS[old]


_EMPTY_JSON = {"[]": (), "{}": {}, "null": None}


def _decode_json(value: Any, default: Any) -> Any:
    if value is None:
        return default
    if isinstance(value, str):
        # Most env/locks/paths columns hold an empty value: skip the parser for those.
        empty = _EMPTY_JSON.get(value, _EMPTY_JSON)
        if empty is not _EMPTY_JSON:
            return default if empty is None else type(default)()
        return json.loads(value)
    return value


class Worktree(NamedTuple):
    """A run's own git worktree: its path (the run's cwd), repository and branch."""

    path: str
    repo: str
    branch: str


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run as it stands in the job table.

    Its fields are the table's columns, in order: each field's annotation and
    `column()` facts are the one declaration that models.py builds the table from
    and that the decoders and JSON output below derive from.
    """

    id: int = column(primary_key=True)
    name: str = column(insert_default="")
    agent: str = column(insert_default="default")
    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str]
    session_id: str
    status: Status = column(insert_default=Status.QUEUED.value)  # noqa: RUF009 (a field())
    attempt: int = column(insert_default=1)
    max_retries: int = column(insert_default=0)
    # Requeue (as the next attempt, counted against max_retries) when the run's worker
    # is declared dead by a rescue; off by default because the command may have had
    # side effects before its worker vanished.
    retry_on_lost: bool = column(insert_default=False, since=2)
    not_before: float | None
    timeout_s: float | None
    hung_after_s: float = column(insert_default=300.0)
    hung: bool = column(insert_default=False)
    pid: int | None
    pid_create_time: float | None
    pgid: int | None
    shim_pid: int | None
    shim_create_time: float | None
    host: str | None
    worker_id: str | None
    # The worker's fencing token: whoever holds it may write the run as its owner, so
    # it stays out of the JSON output.
    claim_token: str | None = column(in_json=False)
    created_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    activity_at: float | None
    exit_code: int | None
    signal: int | None
    reason: str | None = column(text=True)
    cancel_requested: bool = column(insert_default=False)
    kill_requested: bool = column(insert_default=False)
    cancel_grace_s: float | None
    stop_cause: str | None
    output_bytes: int = column(insert_default=0)
    version: int = column(insert_default=1)
    # Leases held while running (see leases.py). Schema 3 added these columns with
    # ALTER TABLE, so locks and paths may be NULL in the table; the record reads NULL
    # as empty. `leased` says whether any lease is set, so the claim can keep its
    # one-statement path for the rest.
    # the directory it leases while running (None: shared, or --paths)
    workspace: str | None = column(text=True, since=3)
    locks: tuple[str, ...] = column(nullable=True, since=3)  # declared lock names
    paths: tuple[str, ...] = column(nullable=True, since=3)  # declared path globs, absolute
    leased: bool = column(insert_default=False, since=3)
    # A run in its own git worktree (workspaces.py): the worktree is also its cwd.
    worktree: str | None = column(text=True, since=3)
    worktree_repo: str | None = column(text=True, since=3)  # the repository it belongs to
    worktree_branch: str | None = column(since=3)
    keep_worktree: bool = column(insert_default=False, since=3)
    # A run on a pseudo-terminal: its shim serves the terminal on tty.sock in the run's
    # directory. The size is the one it started with (viewers may resize it since).
    tty: bool = column(insert_default=False, since=4)
    tty_cols: int | None = column(since=4)
    tty_rows: int | None = column(since=4)
    # "Needs you": the run waits for its user (the agent said so, or its terminal shows
    # a prompt). Like `hung` a flag on a running run; a waiting run is never hung.
    waiting: bool = column(insert_default=False, since=4)
    waiting_reason: str | None = column(text=True, since=4)  # untrusted: the agent's words
    waiting_since: float | None = column(since=4)

    @classmethod
    def from_row(cls, row: Any) -> RunRecord:
        """Build from a mapping of column values (SQLAlchemy row, sqlite3.Row or dict)."""
        data = _decoded_row(row, tuple)
        for name, enum_type in _ENUM_FIELDS:
            data[name] = enum_type(data[name])
        return cls(**data)

    @staticmethod
    def json_of_values(values: Sequence[Any]) -> dict[str, Any]:
        """`to_json()` of the record whose column values are `values`, in RUN_FIELDS
        order, without building the record in between (`ls --json` prints thousands of
        these; the record and a dict per row would cost half of its time)."""
        data = _decoded(dict(zip(RUN_FIELDS, values, strict=True)), list)
        for name in _NOT_IN_JSON:
            del data[name]
        return data

    @property
    def is_active(self) -> bool:
        return self.status in (Status.QUEUED, Status.RUNNING)

    @property
    def checkout(self) -> Worktree | None:
        """Its worktree, when it has one of its own."""
        if self.worktree and self.worktree_repo and self.worktree_branch:
            return Worktree(self.worktree, self.worktree_repo, self.worktree_branch)
        return None

    def runtime_s(self, now: float | None = None) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else (now or time.time())
        return max(0.0, end - self.started_at)

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its recursive deep copy made `ls --json` on 10,000
        # runs take seconds.
        data = {name: getattr(self, name) for name in _JSON_FIELDS}
        for name in _SEQUENCE_FIELDS:
            data[name] = list(data[name])
        for name in _MAPPING_FIELDS:
            data[name] = dict(data[name])
        for name, _ in _ENUM_FIELDS:
            data[name] = str(data[name])
        return data


# Derived once from RunRecord's declaration, so the per-row paths below only walk
# short precomputed tuples.
RUN_STORED_FIELDS = stored_fields(RunRecord)
RUN_FIELDS: tuple[str, ...] = tuple(f.name for f in RUN_STORED_FIELDS)
"""The record's fields = the table's columns, in order."""
_JSON_FIELDS = tuple(f.name for f in RUN_STORED_FIELDS if f.in_json)
_NOT_IN_JSON = tuple(f.name for f in RUN_STORED_FIELDS if not f.in_json)
# JSON columns hold lists (the record's tuples) or objects (its dicts).
_SEQUENCE_FIELDS = tuple(
    f.name for f in RUN_STORED_FIELDS if f.kind == "json" and f.base is not dict
)
_MAPPING_FIELDS = tuple(f.name for f in RUN_STORED_FIELDS if f.kind == "json" and f.base is dict)
# SQLite hands booleans back as 0/1.
_RUN_FLAGS = tuple(f.name for f in RUN_STORED_FIELDS if f.kind == "boolean")
_ENUM_FIELDS = tuple((f.name, f.base) for f in RUN_STORED_FIELDS if issubclass(f.base, enum.Enum))
# Columns added after schema 1, defaulted when a read-only snapshot meets a not yet
# migrated file (`qqtui ls` never migrates; the first store open does).
_OLD_ROW_DEFAULTS: dict[str, Any] = {
    f.name: f.old_row_default for f in RUN_STORED_FIELDS if f.since > 1
}


def _decoded_row(row: Any, sequence: type[tuple] | type[list]) -> dict[str, Any]:
    """A run row's values by field name, JSON columns decoded (lists as `sequence`)
    and flags as bools; the status stays its string."""
    try:
        data = {name: row[name] for name in RUN_FIELDS}
    except KeyError:  # a row read before the newest columns existed
        keys = set(row.keys())
        data = {name: row[name] if name in keys else _OLD_ROW_DEFAULTS[name] for name in RUN_FIELDS}
    return _decoded(data, sequence)


def _decoded(data: dict[str, Any], sequence: type[tuple] | type[list]) -> dict[str, Any]:
    """`data` (raw column values by field name) decoded in place, see `_decoded_row`."""
    for name in _SEQUENCE_FIELDS:
        data[name] = sequence(_decode_json(data[name], []))
    for name in _MAPPING_FIELDS:
        data[name] = dict(_decode_json(data[name], {}))
    for flag in _RUN_FLAGS:
        data[flag] = bool(data[flag])
    return data


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One row of the append-only timeline."""

    id: int
    run_id: int
    at: float
    kind: str
    from_status: str | None
    to_status: str | None
    reason: str | None
    actor: str | None
    host: str | None

    @classmethod
    def from_row(cls, row: Any) -> EventRecord:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    id: str
    host: str
    pid: int
    pid_create_time: float
    boot_id: str
    started_at: float
    heartbeat_at: float
    stopped_at: float | None
    clock_skew_s: float | None  # its wall clock minus the server's (None: same clock)

    @classmethod
    def from_row(cls, row: Any) -> WorkerRecord:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    @property
    def clock_skewed(self) -> bool:
        """Whether its clock is off by enough to confuse people reading its times."""
        return self.clock_skew_s is not None and abs(self.clock_skew_s) >= CLOCK_SKEW_WARN_S


@dataclass(frozen=True, slots=True)
class OutputTail:
    """The last bytes of a run's output as its worker last stored them (any host)."""

    run_id: int
    attempt: int
    host: str
    log_path: str  # where the full log lives, on `host`
    size: int
    tail: bytes
    updated_at: float

    @classmethod
    def from_row(cls, row: Any) -> OutputTail:
        data = {f.name: row[f.name] for f in dataclasses.fields(cls)}
        data["tail"] = bytes(data["tail"])
        return cls(**data)
