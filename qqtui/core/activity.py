"""Watching the runs a worker owns: output and heartbeats as activity, the hung flag,
the output cap, and (shared stores) the output tail other hosts read."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from qqtui.core.store import OUTPUT_TAIL_BYTES, Store
from qqtui.core.tracked import Tracked, with_changes


@dataclass(slots=True)
class ActivityWatcher:
    """Reads each owned run's log size and heartbeat file once a tick."""

    store: Store
    worker_id: str
    log_cap: int  # bytes of output kept per run
    output_tail_s: float  # shared stores: a running run's tail, at most this often

    def note_truncation(self, tracked: Tracked, size: int | None) -> None:
        """One event the first time a run's log reaches the cap."""
        if size is None or size < self.log_cap or tracked.truncated:
            return
        tracked.truncated = True
        self.store.add_event(
            tracked.run.id,
            "output_truncated",
            f"output reached the cap of {self.log_cap} bytes; further output is discarded",
            actor=f"worker:{self.worker_id}",
        )

    def watch(self, runs: Iterable[Tracked], now: float) -> None:
        """Record new output or a fresh heartbeat as activity; flag a run hung after
        `hung_after_s` without either, and unflag it when either resumes."""
        for tracked in runs:
            run = tracked.run
            active_at: float | None = None
            try:
                size = tracked.log_path.stat().st_size
            except OSError:
                size = tracked.log_size
            if size != tracked.log_size:
                if tracked.log_size >= 0:
                    active_at = now
                tracked.log_size = size
                self.note_truncation(tracked, size)
            self.store_tail(tracked, size)
            try:
                mtime = tracked.heartbeat_path.stat().st_mtime
            except OSError:
                mtime = tracked.heartbeat_mtime
            if mtime > tracked.heartbeat_mtime:
                if tracked.heartbeat_mtime > 0:
                    # The mtime is by this host's clock; `now` may be the server's.
                    touched = now - max(0.0, time.time() - mtime)
                    active_at = max(active_at or 0.0, touched)
                tracked.heartbeat_mtime = mtime
            if active_at is not None:
                self.store.record_activity(
                    run.id, tracked.token, activity_at=active_at, output_bytes=max(size, 0)
                )
                tracked.run = run = with_changes(run, activity_at=active_at)
                if run.hung:
                    self.store.set_hung(run.id, tracked.token, False, "activity resumed")
                    tracked.run = with_changes(run, hung=False)
                continue
            last = run.activity_at or run.started_at or now
            idle = now - last
            if (
                not run.hung
                and idle >= run.hung_after_s
                and self.store.set_hung(
                    run.id,
                    tracked.token,
                    True,
                    f"no output and no heartbeat for {idle:.0f}s (threshold {run.hung_after_s:g}s)",
                )
            ):
                tracked.run = with_changes(run, hung=True)

    def store_tail(self, tracked: Tracked, size: int, *, final: bool = False) -> None:
        """Shared stores: keep the run's output tail in the database (at most every
        `output_tail_s`) for TUIs on hosts that cannot read this host's files."""
        if not self.store.shared or size < 0 or size == tracked.tail_size:
            return
        mono = time.monotonic()
        if not final and mono - tracked.tail_at < self.output_tail_s:
            return
        try:
            with open(tracked.log_path, "rb") as fh:
                fh.seek(max(0, size - OUTPUT_TAIL_BYTES))
                tail = fh.read(OUTPUT_TAIL_BYTES)
        except OSError:
            return
        tracked.tail_size, tracked.tail_at = size, mono
        self.store.record_output_tail(
            tracked.run.id,
            tracked.token,
            attempt=tracked.run.attempt,
            log_path=str(tracked.log_path),
            size=size,
            tail=tail,
        )
