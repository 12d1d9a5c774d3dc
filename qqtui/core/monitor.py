"""What a live view of the job table needs each tick, computed off the UI thread: every
run, the process trees of the running ones, a minute of CPU history per run, counts,
and the changes worth telling a person about (failed, timed out, lost, became hung).

Headless on purpose: the app calls `Monitor.poll()` from a thread worker, and tests
can drive it with a fixed clock and no Textual at all.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from qqtui.core.launch import run_paths
from qqtui.core.procs import ProcessTable, RunTarget, RunTree
from qqtui.core.records import RunRecord, Status
from qqtui.core.snapshot import Snapshot

PROGRESS_FILE = "progress.json"  # written by qqtui.agent.progress()
CPU_HISTORY_SAMPLES = 60
"""One sample per poll: at the usual 1 s poll this is the last minute."""

# Statuses a person wants to hear about the moment a run reaches them.
ALERT_STATUSES = frozenset({Status.FAILED, Status.TIMED_OUT, Status.LOST})
# Only a running run changes without a version bump (its worker's pid, activity and
# output writes); every other change is a transition, which bumps the version.
_REREAD_ALWAYS = frozenset({str(Status.RUNNING)})


@dataclass(frozen=True, slots=True)
class Alert:
    """A change worth a notification: `kind` is a final status or "hung"."""

    run: RunRecord
    kind: str


@dataclass(frozen=True, slots=True)
class Progress:
    """What an agent last reported with `qqtui.agent.progress()` / `qqtui progress`."""

    fraction: float
    message: str


def read_progress(home: Path, run: RunRecord) -> Progress | None:
    """The run's progress.json (its own, else its session's), or None when absent or
    unreadable: an agent's half-written or odd file never breaks the view."""
    session_path, run_path = run_paths(home, run)
    for path in (run_path / PROGRESS_FILE, session_path / PROGRESS_FILE):
        try:
            data = json.loads(path.read_bytes())
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


def count_runs(runs: Iterable[RunRecord]) -> dict[str, int]:
    """Counts by status, plus "hung" (running and flagged) and "done" (succeeded)."""
    counts = {str(s): 0 for s in Status}
    hung = 0
    for run in runs:
        counts[str(run.status)] += 1
        if run.hung and run.status is Status.RUNNING:
            hung += 1
    counts["hung"] = hung
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
    _snapshot: Snapshot = field(init=False)
    _table: ProcessTable = field(init=False, default_factory=ProcessTable)
    _cpu: dict[int, deque[float]] = field(init=False, default_factory=dict)
    _last: dict[int, tuple[Status, bool]] | None = field(init=False, default=None)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _runs: dict[int, RunRecord] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._snapshot = Snapshot(self.db_url)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def poll(self) -> PollResult:
        with self._lock:
            runs = self._read_runs()
            running = [r for r in runs.values() if r.status is Status.RUNNING]
            trees: dict[int, RunTree] = {}
            if self.scan_processes and running:
                trees = self._table.scan([RunTarget.of(r, self.home) for r in running])
            self._record_cpu(trees)
            progress = {r.id: p for r in running if (p := read_progress(self.home, r)) is not None}
            first = self._last is None
            alerts = () if first else tuple(self._alerts(runs))
            self._last = {run_id: (run.status, run.hung) for run_id, run in runs.items()}
            return PollResult(
                runs=runs,
                trees=trees,
                cpu_history={run_id: tuple(h) for run_id, h in self._cpu.items()},
                counts=count_runs(runs.values()),
                alerts=alerts,
                now=self.clock(),
                progress=progress,
                first=first,
            )

    def _read_runs(self) -> dict[int, RunRecord]:
        """Every run, re-reading only those that may have changed.

        Turning 10,000 rows into records costs about half a second; a finished run
        only changes through a transition, which bumps its version. So each poll
        reads (id, version, status) of all runs and the full rows of the running,
        new and re-versioned ones. Unchanged records are the same objects as the
        last poll, which lets the table skip them too.
        """
        if self._snapshot.path is None:
            return {run.id: run for run in self._snapshot.runs()}
        # The snapshot's query helper handles a missing file, busy timeouts and
        # corrupt databases with clear errors; reuse it rather than repeat it.
        query = self._snapshot._query
        cached = self._runs
        stale: list[int] = []
        present: list[int] = []
        for row in query("SELECT id, version, status FROM runs ORDER BY id"):
            run_id = row["id"]
            present.append(run_id)
            old = cached.get(run_id)
            if old is None or old.version != row["version"] or row["status"] in _REREAD_ALWAYS:
                stale.append(run_id)
        fresh: dict[int, RunRecord] = {}
        for start in range(0, len(stale), 500):
            chunk = stale[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in query(f"SELECT * FROM runs WHERE id IN ({marks})", chunk):
                fresh[row["id"]] = RunRecord.from_row(row)
        runs = {}
        for run_id in present:
            run = fresh.get(run_id) or cached.get(run_id)
            if run is not None:
                runs[run_id] = run
        self._runs = runs
        return runs

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
            old_status, old_hung = before if before is not None else (None, False)
            if run.status in ALERT_STATUSES and run.status != old_status:
                yield Alert(run, str(run.status))
            elif run.hung and run.status is Status.RUNNING and not old_hung:
                yield Alert(run, "hung")
