"""Watching the runs a worker owns: output and heartbeats as activity, the hung flag,
the "needs you" flag (waiting), the output cap, and (shared stores) the output tail
other hosts read.

The waiting flag, each tick, for each run (see waitdetect.py for the detectors):
- set when the agent's report (waiting.json) appears or is rewritten; for a tty run
  also when its screen's last lines match the profile's waiting_patterns after
  SCREEN_QUIET_S without output (one emulation per quiet period), or when its
  terminal's foreground process is blocked reading it after BLOCKED_QUIET_S;
- cleared when the agent withdraws its report (`working()`, `qqtui waiting --done`),
  when input reaches a tty run's terminal (tty.input's mtime moves), and by new
  output, except for an agent-reported wait on a tty run: full-screen agents redraw
  (spinners, clocks) while they wait, so there only the agent or the input clears it;
- a run that waits is never flagged hung; the idle clock restarts when a wait ends.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from qqtui.core import sessions
from qqtui.core.profiles import DEFAULT_WAITING_PATTERNS, config_path, profile_for
from qqtui.core.records import QqError
from qqtui.core.runspec import tty_size_of
from qqtui.core.store import OUTPUT_TAIL_BYTES, Store
from qqtui.core.tracked import Tracked, with_changes
from qqtui.core.waitdetect import (
    blocked_reader,
    compile_patterns,
    read_agent_report,
    report_identity,
    screen_prompt,
)

log = logging.getLogger("qqtui.activity")

SCREEN_QUIET_S = 1.0
"""A tty run's screen is matched against its prompt patterns after this long quiet."""
REPORT_OUTPUT_GRACE_S = 1.0
"""Output written this soon after the agent's report does not clear it."""
BLOCKED_QUIET_S = 3.0
"""Its foreground process is looked at after this long without output or input."""


@dataclass(slots=True)
class WaitState:
    """What the watcher remembers of one run's waiting flag between ticks."""

    seen: bool = False
    report: tuple[int, int] | None = None  # the agent report last acted on
    source: str | None = None  # what set the flag: "agent", "screen" or "terminal"
    size_at_flag: int = -1  # the log's size when it was set
    input_at_flag: float = 0.0  # tty.input's mtime when it was set
    screen_checked: int = -1  # the log's size at the last screen check


def _mtime(path: Path) -> float:
    try:
        return os.stat(path, follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


@dataclass(slots=True)
class ActivityWatcher:
    """Reads each owned run's log size and heartbeat file once a tick."""

    store: Store
    worker_id: str
    log_cap: int  # bytes of output kept per run
    output_tail_s: float  # shared stores: a running run's tail, at most this often
    home: Path | None = None  # for the profiles' waiting_patterns (None: the defaults)
    _waits: dict[int, WaitState] = field(default_factory=dict)
    _patterns: dict[str, tuple[int, tuple[re.Pattern[str], ...]]] = field(default_factory=dict)

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
        `hung_after_s` without either, and unflag it when either resumes; set and
        clear the waiting flag (see the module docstring)."""
        runs = list(runs)
        if len(self._waits) > len(runs):
            ids = {t.run.id for t in runs}
            for gone in [run_id for run_id in self._waits if run_id not in ids]:
                del self._waits[gone]
        for tracked in runs:
            run = tracked.run
            active_at: float | None = None
            log_mtime = 0.0
            try:
                st = tracked.log_path.stat()
                size, log_mtime = st.st_size, st.st_mtime
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
            if self.watch_waiting(tracked, size, log_mtime, now):
                active_at = max(active_at or 0.0, now)
            run = tracked.run
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
                and not run.waiting
                and idle >= run.hung_after_s
                and self.store.set_hung(
                    run.id,
                    tracked.token,
                    True,
                    f"no output and no heartbeat for {idle:.0f}s (threshold {run.hung_after_s:g}s)",
                )
            ):
                tracked.run = with_changes(run, hung=True)

    # -- the waiting flag

    def watch_waiting(self, tracked: Tracked, size: int, log_mtime: float, now: float) -> bool:
        """Set or clear the run's waiting flag; True when a wait ended this tick (the
        idle clock restarts then, so an answered run is not at once called hung)."""
        run = tracked.run
        state = self._waits.get(run.id)
        if state is None:
            state = self._waits[run.id] = WaitState()
        report_path = tracked.run_dir / sessions.WAITING_FILE
        report = report_identity(report_path)
        input_at = _mtime(tracked.run_dir / sessions.TTY_INPUT_FILE) if run.tty else 0.0
        if not state.seen:
            # First look at this run (spawned, or adopted from a dead worker).
            state.seen = True
            if run.waiting:
                state.source = "agent" if report is not None else "terminal"
                state.size_at_flag, state.input_at_flag = size, input_at
                state.report = report
            elif report is not None and report[1] / 1e9 <= input_at:
                state.report = report  # answered before this worker took the run over
        if run.waiting:
            return self._maybe_clear(tracked, state, report, size, log_mtime, input_at)
        if report is not None and report != state.report:
            state.report = report
            found = read_agent_report(report_path)
            if found is not None:
                self._flag(tracked, state, found.message, "agent", size, input_at)
            return False
        if not run.tty or size < 0:
            return False
        quiet_s = time.time() - max(log_mtime, input_at)
        if quiet_s >= SCREEN_QUIET_S and size != state.screen_checked:
            state.screen_checked = size  # once per quiet period: emulating costs
            cols, rows = tty_size_of(run) or (80, 24)
            line = screen_prompt(tracked.log_path, cols, rows, self._patterns_of(run.agent))
            if line is not None:
                self._flag(tracked, state, f"prompt on screen: {line}", "screen", size, input_at)
                return False
        if quiet_s >= BLOCKED_QUIET_S:
            blocked = blocked_reader(run.pid, run.pid_create_time)
            if blocked is not None:
                reason = f"{blocked.name} (pid {blocked.pid}) is waiting for input on its terminal"
                self._flag(tracked, state, reason, "terminal", size, input_at)
        return False

    def _maybe_clear(
        self,
        tracked: Tracked,
        state: WaitState,
        report: tuple[int, int] | None,
        size: int,
        log_mtime: float,
        input_at: float,
    ) -> bool:
        run = tracked.run
        why: str | None = None
        source = "worker"
        if (
            state.source == "agent"
            and state.report is not None
            and size > max(state.size_at_flag, 0)
            and log_mtime <= state.report[1] / 1e9 + REPORT_OUTPUT_GRACE_S
        ):
            # An agent that reports, then prints its question: that output is part
            # of the wait, not an answer to it.
            state.size_at_flag = size
        if input_at > state.input_at_flag:
            why, source = "input reached its terminal", "input"
        elif state.source == "agent" and report is None:
            why, source = "the agent works again", "agent"
        elif size > max(state.size_at_flag, 0) and (state.source != "agent" or not run.tty):
            why, source = "new output", "output"
        elif report is not None and report != state.report:
            # A fresh report while waiting: the agent's words replace the screen's.
            state.report = report
            found = read_agent_report(tracked.run_dir / sessions.WAITING_FILE)
            if found is not None:
                state.source = "agent"
                self.store.set_waiting(run.id, tracked.token, True, found.message, "agent")
                tracked.run = with_changes(run, waiting_reason=found.message)
            return False
        if why is None:
            return False
        if self.store.set_waiting(run.id, tracked.token, False, why, source):
            tracked.run = with_changes(run, waiting=False, waiting_reason=None, waiting_since=None)
        # The report it answered is spent; the next one the agent writes counts again.
        state.report, state.source = report, None
        state.screen_checked = size
        return True

    def _flag(
        self,
        tracked: Tracked,
        state: WaitState,
        reason: str,
        source: str,
        size: int,
        input_at: float,
    ) -> None:
        run = tracked.run
        if self.store.set_waiting(run.id, tracked.token, True, reason, source):
            tracked.run = with_changes(
                run,
                waiting=True,
                waiting_reason=reason,
                waiting_since=self.store.clock(),
                hung=False,
            )
            state.source, state.size_at_flag, state.input_at_flag = source, size, input_at

    def _patterns_of(self, agent: str) -> tuple[re.Pattern[str], ...]:
        """The agent's waiting_patterns compiled, again only when config.toml changes."""
        stamp = 0
        if self.home is not None:
            try:
                stamp = config_path(self.home).stat().st_mtime_ns
            except OSError:
                stamp = 0
        cached = self._patterns.get(agent)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        patterns: tuple[str, ...] = DEFAULT_WAITING_PATTERNS
        if self.home is not None:
            try:
                patterns = profile_for(self.home, agent).waiting_patterns
            except QqError as exc:  # a broken config.toml: the defaults, and say why
                log.warning("waiting patterns of %s: %s", agent, exc)
        compiled = compile_patterns(patterns)
        self._patterns[agent] = (stamp, compiled)
        return compiled

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
