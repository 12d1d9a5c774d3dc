"""A run a worker owns, as the worker tracks it, and the shim's status record for it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from qqtui.core import sessions
from qqtui.core.procs.kill import TreeKill
from qqtui.core.procs.spawn import Spawned
from qqtui.core.records import RunRecord


@dataclass(slots=True)
class Tracked:
    """A running run this supervisor owns."""

    run: RunRecord
    token: str
    run_dir: Path
    spawned: Spawned | None = None  # None when adopted from a dead worker
    killer: TreeKill | None = None
    killer_cause: str | None = None
    log_size: int = -1
    heartbeat_mtime: float = 0.0
    ended: bool = False
    truncated: bool = False
    recorded: bool = True  # False while a fresh spawn awaits its shim's start report
    tail_size: int = -1  # log size when its tail was last stored (shared stores)
    tail_at: float = 0.0  # monotonic time of that

    @property
    def status_path(self) -> Path:
        return self.run_dir / sessions.STATUS_FILE

    @property
    def log_path(self) -> Path:
        return self.run_dir / sessions.OUTPUT_LOG

    @property
    def heartbeat_path(self) -> Path:
        return self.run_dir / sessions.HEARTBEAT_FILE


def with_changes(run: RunRecord, **changes: object) -> RunRecord:
    """`run` as the worker now knows it, before the store says so."""
    return dataclasses.replace(run, **changes)  # type: ignore[arg-type]


def with_spawn(run: RunRecord, spawned: Spawned) -> RunRecord:
    """`run` with the pids its shim reported, before (or without) the store's record."""
    return with_changes(
        run,
        pid=spawned.pid,
        pid_create_time=spawned.pid_create_time,
        pgid=spawned.pgid,
        shim_pid=spawned.shim.pid,
        shim_create_time=spawned.shim_create_time,
    )


def read_status(path: Path, attempt: int) -> dict | None:
    """The shim's record for this attempt, or None (missing, torn, or another attempt's)."""
    try:
        data = sessions.read_json(path)
    except sessions.SessionError:
        return None
    if not isinstance(data, dict):
        return None
    if data.get("attempt", attempt) != attempt:
        return None
    return data
