"""Run states, their allowed transitions, and the frozen records core hands out.

Stdlib only: the CLI's read paths and the agent kit import this without paying
for SQLAlchemy.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

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


# Columns of schema 3, defaulted when a read-only snapshot meets a not yet migrated
# file (`qqtui ls` never migrates; the first store open does).
_ADDED_IN_V3: dict[str, Any] = {
    "workspace": None,
    "locks": None,
    "paths": None,
    "leased": False,
    "worktree": None,
    "worktree_repo": None,
    "worktree_branch": None,
    "keep_worktree": False,
}


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
    """One run as it stands in the job table."""

    id: int
    name: str
    agent: str
    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str]
    session_id: str
    status: Status
    attempt: int
    max_retries: int
    retry_on_lost: bool
    not_before: float | None
    timeout_s: float | None
    hung_after_s: float
    hung: bool
    pid: int | None
    pid_create_time: float | None
    pgid: int | None
    shim_pid: int | None
    shim_create_time: float | None
    host: str | None
    worker_id: str | None
    claim_token: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    activity_at: float | None
    exit_code: int | None
    signal: int | None
    reason: str | None
    cancel_requested: bool
    kill_requested: bool
    cancel_grace_s: float | None
    stop_cause: str | None
    output_bytes: int
    version: int
    workspace: str | None  # the directory it leases while running (None: shared)
    locks: tuple[str, ...]  # declared lock names
    paths: tuple[str, ...]  # declared path globs, absolute
    leased: bool  # holds any of the three (the claim checks conflicts for it)
    worktree: str | None  # its own git worktree (also its cwd)
    worktree_repo: str | None  # the repository the worktree belongs to
    worktree_branch: str | None
    keep_worktree: bool

    @classmethod
    def from_row(cls, row: Any) -> RunRecord:
        """Build from a mapping of column values (SQLAlchemy row, sqlite3.Row or dict)."""
        data = _decoded_row(row, tuple)
        data["status"] = Status(data["status"])
        return cls(**data)

    @staticmethod
    def json_of_values(values: Sequence[Any]) -> dict[str, Any]:
        """`to_json()` of the record whose column values are `values`, in RUN_FIELDS
        order, without building the record in between (`ls --json` prints thousands of
        these; the record and a dict per row would cost half of its time)."""
        data = _decoded(dict(zip(RUN_FIELDS, values, strict=True)), list)
        data.pop("claim_token")
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
        data = {name: getattr(self, name) for name in _RUN_FIELDS}
        data["env"] = dict(self.env)
        data["argv"] = list(self.argv)
        data["locks"] = list(self.locks)
        data["paths"] = list(self.paths)
        data["status"] = str(self.status)
        data.pop("claim_token")
        return data


_RUN_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunRecord))
RUN_FIELDS = _RUN_FIELDS  # the record's fields (= the table's columns), in field order
_RUN_FLAGS = (
    "hung",
    "cancel_requested",
    "kill_requested",
    "retry_on_lost",
    "leased",
    "keep_worktree",
)


def _decoded_row(row: Any, sequence: type[tuple] | type[list]) -> dict[str, Any]:
    """A run row's values by field name, JSON columns decoded (lists as `sequence`)
    and flags as bools; the status stays its string."""
    try:
        data = {name: row[name] for name in _RUN_FIELDS}
    except KeyError:  # a row read before the v3 columns existed
        keys = set(row.keys())
        data = {name: row[name] if name in keys else _ADDED_IN_V3[name] for name in _RUN_FIELDS}
    return _decoded(data, sequence)


def _decoded(data: dict[str, Any], sequence: type[tuple] | type[list]) -> dict[str, Any]:
    """`data` (raw column values by field name) decoded in place, see `_decoded_row`."""
    data["argv"] = sequence(_decode_json(data["argv"], []))
    data["env"] = dict(_decode_json(data["env"], {}))
    data["locks"] = sequence(_decode_json(data["locks"], []))
    data["paths"] = sequence(_decode_json(data["paths"], []))
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
