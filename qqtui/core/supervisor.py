"""The worker loop: claim, spawn, heartbeat, time out, and compose the jobs that
stop runs (stopping.py), recover them (recovery.py), record their ends (runends.py)
and watch their activity (activity.py).

One thread, one `select()`: it wakes on a nudge from a writer, on a shim's report
(the command ended), or at the poll interval. Every decision goes through the
store; every end is recorded with a reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from qqtui.core import sessions
from qqtui.core.activity import ActivityWatcher
from qqtui.core.intents import run_paths, wake_workers
from qqtui.core.outage import DB_ERRORS, DbBackoff, db_error_line
from qqtui.core.procs.spawn import DEFAULT_LOG_CAP, RunEnvironment, SpawnError, start_run
from qqtui.core.records import DEFAULT_GRACE_S, RunRecord, StaleClaimError, Status, WorkerRecord
from qqtui.core.recovery import Recovery
from qqtui.core.runends import EndRecorder, end_status, exit_info
from qqtui.core.runspec import tty_size_of
from qqtui.core.stopping import RunStopper
from qqtui.core.store import Store
from qqtui.core.tracked import Tracked, read_status, with_spawn
from qqtui.core.wakeup import WakeSocket
from qqtui.core.workerctl import app_open

log = logging.getLogger("qqtui.supervisor")

# --stop-runs: after the grace, this long for the KILLed runs' ends to come through.
STOP_RUNS_SLACK_S = 5.0


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    concurrency: int = 4
    poll_s: float = 0.5
    heartbeat_s: float = 2.0
    recovery_s: float = 5.0
    kill_grace_s: float = DEFAULT_GRACE_S  # timeouts and --stop-runs: TERM, this long, then KILL
    leftover_grace_s: float = 2.0  # processes still alive after the command exited
    log_cap: int = DEFAULT_LOG_CAP
    retry_base_s: float = 2.0
    retry_cap_s: float = 300.0
    until_idle: bool = False
    # Exit after this many seconds with nothing queued or running here while no app of
    # the home is open (the auto-started worker); None: never.
    exit_when_idle_s: float | None = None
    stop_runs_on_exit: bool = False
    # Shared (PostgreSQL) stores only: a worker silent for this long is dead, and its
    # runs on any host are rescued (see Store.rescue_dead_workers).
    rescue_after_s: float = 60.0
    output_tail_s: float = 1.0  # shared stores: a running run's output tail, at most this often
    output_tail_keep_s: float = 7 * 86400.0  # ... and an ended run's, kept this long
    prune_s: float = 600.0  # how often a worker drops the expired ones
    db_retry_base_s: float = 0.5  # database unreachable: first wait, doubling, with jitter
    db_retry_cap_s: float = 30.0


@dataclass(slots=True)
class Supervisor:
    store: Store
    home: Path
    config: SupervisorConfig = field(default_factory=SupervisorConfig)
    # None: the store's clock, which on a shared store is the database server's, so
    # timeouts, hung flags and retry times agree with every other host.
    clock: Callable[[], float] | None = None
    worker_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    tracked: dict[int, Tracked] = field(default_factory=dict)
    stopping: bool = False
    # The jobs it composes, built from the fields above; they share `tracked`.
    stopper: RunStopper = field(init=False)
    recovery: Recovery = field(init=False)
    ends: EndRecorder = field(init=False)
    activity: ActivityWatcher = field(init=False)
    outage: DbBackoff = field(init=False)
    _wake: WakeSocket | None = None
    _last_heartbeat: float = 0.0
    _last_recovery: float = 0.0
    _last_rescue: float = 0.0
    _idle_since: float | None = None  # monotonic time since idle with no app open

    def __post_init__(self) -> None:
        config = self.config
        self.stopper = RunStopper(
            self.store,
            self.home,
            self.worker_id,
            self.tracked,
            kill_grace_s=config.kill_grace_s,
            leftover_grace_s=config.leftover_grace_s,
        )
        self.recovery = Recovery(
            self.store,
            self.home,
            self.worker_id,
            self.tracked,
            rescue_after_s=config.rescue_after_s,
            output_tail_keep_s=config.output_tail_keep_s,
            prune_s=config.prune_s,
        )
        self.ends = EndRecorder(
            self.store,
            self.worker_id,
            self.now,
            retry_base_s=config.retry_base_s,
            retry_cap_s=config.retry_cap_s,
        )
        self.activity = ActivityWatcher(
            self.store,
            self.worker_id,
            log_cap=config.log_cap,
            output_tail_s=config.output_tail_s,
            home=self.home,
        )
        self.outage = DbBackoff(config.db_retry_base_s, config.db_retry_cap_s)

    @property
    def boot(self) -> str:
        """This host's boot id; another one makes this worker a simulated host."""
        return self.recovery.boot

    @boot.setter
    def boot(self, value: str) -> None:
        self.recovery.boot = value

    @property
    def pending_ends(self) -> dict[int, Callable[[], None]]:
        """Ends waiting for the database to come back, by run id."""
        return self.ends.pending_ends

    def now(self) -> float:
        """The time decisions are made by (see `clock`)."""
        return (self.clock or self.store.clock)()

    # -- lifecycle

    def start(self) -> WorkerRecord:
        me = psutil.Process()
        while True:
            try:
                return self._register(me)
            except DB_ERRORS as exc:
                if self.stopping:
                    raise
                self._db_unreachable(exc)

    def _register(self, me: psutil.Process) -> WorkerRecord:
        record = self.store.register_worker(
            worker_id=self.worker_id,
            pid=me.pid,
            pid_create_time=me.create_time(),
            boot_id=self.boot,
        )
        if self._wake is None:
            self._wake = WakeSocket(str(self.store.engine.url), self.worker_id)
        self.recover()
        self.recovery.stop_strays()
        self.outage.ok()
        return record

    def request_stop(self, *_: object) -> None:
        self.stopping = True

    def run_forever(self) -> int:
        """The `qqtui worker` main loop; returns the process exit code."""
        previous = {
            sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self.start()
            while not self.stopping:
                try:
                    self.tick()
                    if self.config.until_idle and self._idle():
                        break
                    if self._idle_too_long():
                        log.info(
                            "idle for %.0fs with no app open; exiting",
                            self.config.exit_when_idle_s,
                        )
                        break
                except DB_ERRORS as exc:
                    # The runs live on without us; every decision this tick could not
                    # write is taken again on the next one.
                    self._db_unreachable(exc)
                    continue
                self.outage.ok()
                self._wait()
            self.shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def shutdown(self) -> None:
        """Stop claiming. Runs stay alive for the next worker to adopt, unless
        `stop_runs_on_exit`, in which case their trees are stopped and recorded."""
        if self.config.stop_runs_on_exit:
            self.stopper.stop_all("shutdown")
            deadline = time.monotonic() + self.config.kill_grace_s + STOP_RUNS_SLACK_S
            while self.tracked and time.monotonic() < deadline:
                self.tick(claim=False)
                self._wait(max_s=0.1)
        for tracked in self.tracked.values():
            if tracked.spawned is not None:
                # Drop our end of the report pipe without waiting: the shim lives on.
                with contextlib.suppress(OSError):
                    tracked.spawned.shim.stdout.close()  # type: ignore[union-attr]
        self.stopper.finish_leftovers()
        try:
            self.ends.apply_pending()
            self.store.stop_worker(self.worker_id)
        except DB_ERRORS as exc:
            # Unrecorded ends stay in the shims' status files; the next worker on this
            # host records them from there (recover()).
            log.error(
                "database unreachable at exit (%s); %d ends left to recovery",
                db_error_line(exc),
                len(self.pending_ends),
            )
        if self._wake is not None:
            self._wake.close()

    # -- database outages (see outage.py)

    def _db_unreachable(self, exc: Exception) -> None:
        # A TERM's grace still ends in a KILL while the worker waits.
        self.outage.wait(
            exc, stopping=lambda: self.stopping, meanwhile=self.stopper.advance_killers
        )

    def _idle(self) -> bool:
        if self.tracked or self.stopper.busy:
            return False
        counts = self.store.count_by_status()
        return counts.get(Status.QUEUED, 0) == 0

    def _idle_too_long(self) -> bool:
        limit = self.config.exit_when_idle_s
        if limit is None or limit <= 0:
            return False
        if not self._idle() or app_open(self.home):
            self._idle_since = None
            return False
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        return now - self._idle_since >= limit

    def _wait(self, max_s: float | None = None) -> None:
        timeout = self.stopper.seconds_to_next_kill(
            time.monotonic(), self.config.poll_s if max_s is None else max_s
        )
        fds: list[int] = [
            t.spawned.report_fd
            for t in self.tracked.values()
            if t.spawned is not None and not t.spawned.closed
        ]
        if self._wake is not None:
            fds.append(self._wake.fileno())
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except (InterruptedError, ValueError, OSError):
            return
        if self._wake is not None and self._wake.fileno() in ready:
            self._wake.drain()

    # -- one pass

    def tick(self, *, claim: bool = True) -> None:
        now = self.now()
        self.ends.apply_pending()
        claim = claim and not self.stopping
        # Claim before any bookkeeping: a nudge from `add` is answered first (recording
        # the ends below costs a write each), then slots those ends freed are refilled.
        if claim:
            self._claim()
        ended = self._collect_ends()
        if claim and ended:
            self._claim()
        self.stopper.reap_shims()
        self.stopper.act_on_requests()
        self._enforce_timeouts(now)
        self.stopper.advance_killers()
        self.activity.watch(self.tracked.values(), now)
        if time.monotonic() - self._last_heartbeat >= self.config.heartbeat_s:
            self._last_heartbeat = time.monotonic()
            self.store.heartbeat_worker(self.worker_id)
            self.store.heartbeat_runs(self.worker_id, [*self.tracked, *self.pending_ends])
        if time.monotonic() - self._last_recovery >= self.config.recovery_s:
            self.recover()
            if self.store.shared:
                self.rescue()

    # -- claiming and spawning

    def _claim(self) -> None:
        free = self.config.concurrency - len(self.tracked)
        if free <= 0:
            return
        for run in self.store.claim_runs(self.worker_id, free):
            self._spawn(run)

    def _spawn(self, run: RunRecord) -> None:
        assert run.claim_token is not None
        try:
            session_path, run_dir = run_paths(self.home, run)
            sessions.create_session_dir(self.home, run.agent, run.session_id)
            sessions.create_run_dir(session_path, run.id)
            status_path = run_dir / sessions.STATUS_FILE
            with contextlib.suppress(FileNotFoundError):
                status_path.unlink()  # a previous attempt's record must not be read as ours
            heartbeat = run_dir / sessions.HEARTBEAT_FILE
            heartbeat.touch(mode=0o600)
            artifacts = sessions.ensure_private_dir(sessions.artifacts_dir(session_path, run.id))
            log_path = run_dir / sessions.OUTPUT_LOG
            if run.attempt > 1:
                fd = sessions.open_append_log(log_path)
                with contextlib.closing(os.fdopen(fd, "ab")) as fh:
                    fh.write(f"[qqtui] attempt {run.attempt}\n".encode())
            spawned = start_run(
                run_env=RunEnvironment(
                    run_id=run.id,
                    home=self.home,
                    session_id=run.session_id,
                    session_dir=session_path,
                    heartbeat_file=heartbeat,
                    attempt=run.attempt,
                    artifacts_dir=artifacts,
                ),
                argv=run.argv,
                cwd=run.cwd,
                env_overrides=run.env,
                log_path=log_path,
                status_path=status_path,
                log_cap=self.config.log_cap,
                tty_size=tty_size_of(run),
                socket_path=run_dir / sessions.TTY_SOCKET if run.tty else None,
            )
        except (SpawnError, sessions.SessionError, OSError) as exc:
            self.ends.finish(run, run.claim_token, Status.FAILED, reason=str(exc))
            return
        # The shim answers through the select loop; `_on_started` records it.
        self.tracked[run.id] = Tracked(
            run=run, token=run.claim_token, run_dir=run_dir, spawned=spawned, recorded=False
        )

    def _on_started(self, tracked: Tracked) -> bool:
        """Record the pids once the shim says the command runs; False if it never will."""
        spawned = tracked.spawned
        assert spawned is not None
        run = tracked.run
        if spawned.start_error is not None:
            self.tracked.pop(run.id, None)
            spawned.close()
            self.ends.finish(run, tracked.token, Status.FAILED, reason=spawned.start_error)
            return False
        try:
            self.store.record_spawn(
                run.id,
                tracked.token,
                pid=spawned.pid or 0,
                pid_create_time=spawned.pid_create_time or 0.0,
                pgid=spawned.pgid or 0,
                shim_pid=spawned.shim.pid,
                shim_create_time=spawned.shim_create_time or 0.0,
            )
        except StaleClaimError:
            # Someone fenced us out between claim and spawn: this attempt is theirs now.
            self.tracked.pop(run.id, None)
            self.stopper.kill_unrecorded(run, spawned)
            return False
        tracked.run = with_spawn(run, spawned)
        tracked.recorded = True
        return True

    # -- ends

    def _collect_ends(self) -> int:
        """Record the runs that started or ended since the last tick; returns how many
        ended (or never started), that is how many slots were freed."""
        before = len(self.tracked)
        for tracked in list(self.tracked.values()):
            spawned = tracked.spawned
            if spawned is not None and not tracked.recorded:
                spawned.read_reports()
                if not spawned.answered or not self._on_started(tracked):
                    continue
            ended = exit_info(tracked)
            if ended is None:
                continue
            self._on_end(tracked, ended)
        return before - len(self.tracked)

    def _on_end(self, tracked: Tracked, exit_report: dict) -> None:
        run = self.store.get_run(tracked.run.id)
        with contextlib.suppress(OSError):
            self.activity.store_tail(tracked, tracked.log_path.stat().st_size, final=True)
        status_info = read_status(tracked.status_path, run.attempt) or {}
        output_bytes = status_info.get("output_bytes")
        self.activity.note_truncation(tracked, output_bytes)
        status, reason = end_status(run, exit_report, stopped_here=tracked.killer is not None)
        self.ends.finish(
            run,
            tracked.token,
            status,
            reason=reason,
            exit_code=exit_report.get("exit_code"),
            sig=exit_report.get("signal"),
            output_bytes=output_bytes,
        )
        tracked.ended = True
        if status is Status.SUCCEEDED and run.worktree and not run.keep_worktree:
            self.ends.remove_worktree(run)
        if run.leased:
            # Its leases are free now: a worker waiting on them need not wait a poll.
            try:
                wake_workers(self.store)
            except Exception as exc:  # a missed nudge costs one poll interval, no more
                log.debug("could not nudge workers after run %s: %s", run.id, exc)
        # The shim knows (as subreaper) whether the command left processes behind;
        # without its report (adopted runs) we look.
        self.stopper.release(tracked, leftovers=bool(exit_report.get("leftovers", True)))

    # -- timeouts

    def _enforce_timeouts(self, now: float) -> None:
        for tracked in self.tracked.values():
            run = tracked.run
            if (
                run.timeout_s is not None
                and run.started_at is not None
                and tracked.killer is None
                and now - run.started_at >= run.timeout_s
            ):
                self.stopper.begin_stop(tracked, "timeout", self.config.kill_grace_s)

    # -- recovery and rescue (see recovery.py)

    def recover(self) -> None:
        """Adopt or finalize running runs on this host whose worker is dead."""
        self._last_recovery = time.monotonic()
        self.recovery.recover()

    def rescue(self) -> None:
        """End the runs of workers on other hosts that stopped heartbeating."""
        self._last_rescue = time.monotonic()
        self.recovery.rescue(self.outage.ok_since)
