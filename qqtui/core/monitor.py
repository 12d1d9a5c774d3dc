"""What a live view of the job table needs each tick, computed off the UI thread: every
run, the process trees of the running ones, a minute of CPU history per run, counts,
and the changes worth telling a person about (failed, timed out, lost, became hung,
started waiting for its user).

Headless on purpose: the app calls `Monitor.poll()` from a thread worker, and tests
can drive it with a fixed clock and no Textual at all.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from qqtui.core.intents import output_log_path, run_paths
from qqtui.core.procs.pids import RunTarget
from qqtui.core.procs.scan import ProcessTable, RunTree
from qqtui.core.records import CLOCK_SKEW_WARN_S, OutputTail, RunRecord, Status
from qqtui.core.snapshot import Snapshot

PROGRESS_FILE = "progress.json"  # written by qqtui.agent.progress()
CPU_HISTORY_SAMPLES = 60
"""One sample per poll: at the usual 1 s poll this is the last minute."""
CLOCK_CHECK_S = 5.0
"""How often the workers' clock skews are read: they change slowly, and the read is one
more query per poll that a person would not notice being a few seconds late."""
WORKER_LIVE_S = 60.0
"""A worker that has not heartbeat for this long (server time) is not warned about: its
recorded skew is as old as its last heartbeat. Workers heartbeat every 2 s."""
# A live view waits at most this long for a locked SQLite file before saying so.
MONITOR_BUSY_TIMEOUT_S = 5.0

# Statuses a person wants to hear about the moment a run reaches them.
ALERT_STATUSES = frozenset({Status.FAILED, Status.TIMED_OUT, Status.LOST})


@dataclass(frozen=True, slots=True)
class Alert:
    """A change worth a notification: `kind` is a final status, "hung" or "waiting"."""

    run: RunRecord
    kind: str


@dataclass(frozen=True, slots=True)
class Progress:
    """What an agent last reported with `qqtui.agent.progress()` / `qqtui progress`."""

    fraction: float
    message: str


_PROGRESS_PATHS: dict[tuple[Path, str, str, int], tuple[str, str]] = {}


def _progress_paths(home: Path, run: RunRecord) -> tuple[str, str]:
    """The run's and its session's progress.json, as strings, remembered: building them
    with pathlib for every running run each poll was most of `read_progress`'s cost."""
    key = (home, run.agent, run.session_id, run.id)
    paths = _PROGRESS_PATHS.get(key)
    if paths is None:
        if len(_PROGRESS_PATHS) >= 4096:
            _PROGRESS_PATHS.clear()
        session_path, run_path = run_paths(home, run)
        paths = (str(run_path / PROGRESS_FILE), str(session_path / PROGRESS_FILE))
        _PROGRESS_PATHS[key] = paths
    return paths


def read_progress(home: Path, run: RunRecord) -> Progress | None:
    """The run's progress.json (its own, else its session's), or None when absent or
    unreadable: an agent's half-written or odd file never breaks the view."""
    for path in _progress_paths(home, run):
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        try:
            fraction = min(1.0, max(0.0, float(data.get("fraction", 0.0))))
        except (TypeError, ValueError):
            return None
        message = data.get("message")
        return Progress(fraction, message if isinstance(message, str) else "")
    return None


@dataclass(frozen=True, slots=True)
class ClockSkew:
    """A clock off the database server's by CLOCK_SKEW_WARN_S or more."""

    host: str
    skew_s: float
    """Its wall clock minus the server's: positive when it runs ahead."""
    worker_id: str | None
    """The worker reporting it; None for this process's own host."""


@dataclass(frozen=True, slots=True)
class RemoteOutput:
    """What the database holds of a run's output when its log is not readable here."""

    run: RunRecord
    tail: OutputTail


@dataclass(frozen=True, slots=True)
class PollResult:
    runs: dict[int, RunRecord]
    trees: dict[int, RunTree]
    cpu_history: dict[int, tuple[float, ...]]
    counts: dict[str, int]
    alerts: tuple[Alert, ...]
    now: float
    progress: dict[int, Progress]
    first: bool
    """True for the first poll: there is no earlier state to diff against."""
    clock_skews: tuple[ClockSkew, ...] = ()
    """Live workers (and this host) whose clocks are off the server's, worst first."""


def count_runs(runs: Iterable[RunRecord]) -> dict[str, int]:
    """Counts by status, plus "hung" and "waiting" (running and flagged)."""
    counts = {str(s): 0 for s in Status}
    hung = waiting = 0
    for run in runs:
        counts[str(run.status)] += 1
        if run.status is Status.RUNNING:
            hung += run.hung and not run.waiting
            waiting += run.waiting
    counts["hung"] = hung
    counts["waiting"] = waiting
    counts["total"] = sum(counts[str(s)] for s in Status)
    return counts


@dataclass
class Monitor:
    """Polls a store's snapshot and the process table; one instance per app.

    The ProcessTable lives as long as the monitor so psutil's per-process CPU
    counters have a previous sample. A lock makes `poll` safe if a superseded
    worker thread is still finishing when the next one starts.
    """

    home: Path
    db_url: str
    clock: Callable[[], float] = time.time
    scan_processes: bool = True
    host: str = field(default_factory=lambda: os.uname().nodename)
    """This host's name: a run on another one may have its log only there."""
    clock_check_s: float = CLOCK_CHECK_S
    checkpoint: Callable[[], None] | None = None
    """Called between pieces of a poll's work (see ProcessTable.scan): the app blocks
    its poll thread there while it handles a key press."""
    _snapshot: Snapshot = field(init=False)
    _table: ProcessTable = field(init=False, default_factory=ProcessTable)
    _cpu: dict[int, deque[float]] = field(init=False, default_factory=dict)
    _last: dict[int, tuple[Status, bool, bool]] | None = field(init=False, default=None)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _runs: dict[int, RunRecord] = field(init=False, default_factory=dict)
    _skews: tuple[ClockSkew, ...] = field(init=False, default=())
    _skews_read_at: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._snapshot = Snapshot(self.db_url, busy_timeout_s=MONITOR_BUSY_TIMEOUT_S)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def poll(self) -> PollResult:
        with self._lock:
            runs = self._read_runs()
            running = [r for r in runs.values() if r.status is Status.RUNNING]
            # Another host's processes are not in this host's process table: a pid
            # there says nothing about the same number here.
            here = [r for r in running if r.host is None or r.host == self.host]
            trees: dict[int, RunTree] = {}
            if self.scan_processes and here:
                trees = self._table.scan(
                    [RunTarget.of(r, self.home) for r in here], self.checkpoint
                )
            self._record_cpu(trees)
            progress = {r.id: p for r in running if (p := read_progress(self.home, r)) is not None}
            skews = self._clock_skews()
            first = self._last is None
            alerts = () if first else tuple(self._alerts(runs))
            self._last = {
                run_id: (run.status, run.hung, run.waiting) for run_id, run in runs.items()
            }
            return PollResult(
                runs=runs,
                trees=trees,
                cpu_history={run_id: tuple(h) for run_id, h in self._cpu.items()},
                counts=count_runs(runs.values()),
                alerts=alerts,
                now=self.clock(),
                progress=progress,
                first=first,
                clock_skews=skews,
            )

    def remote_output(self, run: RunRecord) -> RemoteOutput | None:
        """The output tail stored in the database for a run whose log file is not
        readable on this host (it ran on another one, without a shared home).

        None when the log is here (this host's run, or a shared home) or when its
        worker has stored no tail yet: then the log file is the thing to watch.
        """
        if not run.host or run.host == self.host:
            return None
        if output_log_path(self.home, run).exists():
            return None
        tail = self._snapshot.output_tail(run.id)
        return RemoteOutput(run, tail) if tail is not None else None

    def _clock_skews(self) -> tuple[ClockSkew, ...]:
        """Clocks off the server's; read every `clock_check_s`, the last answer between."""
        now = time.monotonic()
        if self._skews_read_at is not None and now - self._skews_read_at < self.clock_check_s:
            return self._skews
        skews: list[ClockSkew] = []
        # server_time first: on PostgreSQL it re-measures this host's skew when due.
        server_now = self._snapshot.server_time()
        own = self._snapshot.clock_skew_s()
        if own is not None and abs(own) >= CLOCK_SKEW_WARN_S:
            skews.append(ClockSkew(self.host, own, None))
        for worker in self._snapshot.workers(live_only=True):
            if worker.clock_skewed and server_now - worker.heartbeat_at <= WORKER_LIVE_S:
                skews.append(ClockSkew(worker.host, worker.clock_skew_s or 0.0, worker.id))
        skews.sort(key=lambda s: -abs(s.skew_s))
        self._skews, self._skews_read_at = tuple(skews), now
        return self._skews

    def _read_runs(self) -> dict[int, RunRecord]:
        """Every run, re-reading only those that may have changed (see
        `Snapshot.runs_reusing`). Unchanged records are the same objects as the last
        poll, which lets the table skip them too."""
        self._runs = self._snapshot.runs_reusing(self._runs)
        return self._runs

    def _record_cpu(self, trees: dict[int, RunTree]) -> None:
        for run_id, tree in trees.items():
            history = self._cpu.get(run_id)
            if history is None:
                history = self._cpu[run_id] = deque(maxlen=CPU_HISTORY_SAMPLES)
            history.append(tree.cpu_percent)
        # A run that stopped running keeps no history: its sparkline would lie.
        for run_id in [r for r in self._cpu if r not in trees]:
            del self._cpu[run_id]

    def _alerts(self, runs: dict[int, RunRecord]) -> Iterable[Alert]:
        assert self._last is not None
        for run_id, run in runs.items():
            before = self._last.get(run_id)
            old_status, old_hung, old_waiting = (
                before if before is not None else (None, False, False)
            )
            if run.status in ALERT_STATUSES and run.status != old_status:
                yield Alert(run, str(run.status))
            elif run.status is not Status.RUNNING:
                continue
            elif run.waiting and not old_waiting:
                yield Alert(run, "waiting")
            elif run.hung and not run.waiting and not old_hung:
                yield Alert(run, "hung")
