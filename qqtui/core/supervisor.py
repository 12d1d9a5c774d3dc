"""The worker loop: claim, spawn, watch, heartbeat, time out, cancel, finish, recover.

One thread, one `select()`: it wakes on a nudge from a writer, on a shim's report
(the command ended), or at the poll interval. Every decision goes through the
store; every end is recorded with a reason.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import random
import select
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from sqlalchemy.exc import DBAPIError

from qqtui.core import sessions, workspaces
from qqtui.core.launch import run_paths, wake_workers
from qqtui.core.procs.kill import TreeKill, find_run_processes
from qqtui.core.procs.pids import (
    CREATE_TIME_TOLERANCE_S,
    RunTarget,
    boot_id,
    create_time_from_ticks,
    is_alive,
)
from qqtui.core.procs.spawn import (
    DEFAULT_LOG_CAP,
    SHIM_PATH,
    RunEnvironment,
    ShimProcess,
    Spawned,
    SpawnError,
    start_run,
)
from qqtui.core.records import (
    IllegalTransitionError,
    NotFoundError,
    QqError,
    RunRecord,
    StaleClaimError,
    Status,
    WorkerRecord,
)
from qqtui.core.store import OUTPUT_TAIL_BYTES, Store
from qqtui.core.strays import end_strays, find_strays
from qqtui.core.wakeup import WakeSocket
from qqtui.core.workerctl import app_open

log = logging.getLogger("qqtui.supervisor")


class DatabaseUnreachable(QqError):
    """Run ends are waiting for the database to come back."""


# What a lost connection or a restarting server raises: the worker waits and retries.
DB_ERRORS: tuple[type[Exception], ...] = (DBAPIError, DatabaseUnreachable)


def _db_error_line(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return (str(orig or exc).splitlines() or [type(exc).__name__])[0]


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    concurrency: int = 4
    poll_s: float = 0.5
    heartbeat_s: float = 2.0
    recovery_s: float = 5.0
    kill_grace_s: float = 10.0  # timeouts and --stop-runs: TERM, this long, then KILL
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


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def describe_exit(exit_code: int | None, sig: int | None) -> str:
    if sig is not None:
        return f"killed by {signal_name(sig)}"
    return f"exit {exit_code}"


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
    leftovers: list[TreeKill] = field(default_factory=list)
    exiting_shims: list[ShimProcess] = field(default_factory=list)
    stopping: bool = False
    boot: str = field(default_factory=boot_id)
    _wake: WakeSocket | None = None
    _last_heartbeat: float = 0.0
    _last_recovery: float = 0.0
    # Ends that could not be written (database unreachable), applied on reconnect; the
    # shim's status file stays the durable record meanwhile.
    pending_ends: dict[int, Callable[[], None]] = field(default_factory=dict)
    _db_ok_since: float | None = None  # monotonic time since the database answers
    _last_rescue: float = 0.0
    _last_prune: float = -math.inf  # the first rescue pass prunes too
    _db_failures: int = 0
    _idle_since: float | None = None  # monotonic time since idle with no app open

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
        self._end_strays()
        self._db_ok()
        return record

    def _end_strays(self) -> None:
        """End processes on this host whose attempt ended while no worker ran here
        (another host declared this one dead, see strays.py). After `recover`, which
        adopts whatever still legitimately runs."""

        def current(run_ids: list[int]) -> dict[int, RunRecord]:
            found = {}
            for run_id in run_ids:
                with contextlib.suppress(NotFoundError):
                    found[run_id] = self.store.get_run(run_id)
            return found

        workers = {w.id: w for w in self.store.workers(host=self.store.host)}
        for found in find_strays(self.home, self.store.host, current):
            run = found.run
            owner = workers.get(run.worker_id or "") if run is not None else None
            if owner is not None and owner.id != self.worker_id and self._worker_alive(owner):
                # Its own worker just ended it and is still stopping what it left
                # behind (TERM, grace, KILL): not ours to report.
                continue
            pids = ", ".join(str(p.pid) for p in found.processes)
            survivors = end_strays(found)
            note = (
                f"attempt {found.attempt} had ended, but {len(found.processes)} of its "
                f"processes (pid {pids}) still ran on {self.store.host}; stopped them"
                + (f" ({len(survivors)} would not die)" if survivors else "")
            )
            log.warning("run %s: %s", found.run_id, note)
            with contextlib.suppress(NotFoundError):
                self.store.add_event(
                    found.run_id, "strays_stopped", note, actor=f"worker:{self.worker_id}"
                )

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
                self._db_ok()
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
            for tracked in self.tracked.values():
                self._begin_stop(tracked, "shutdown", self.config.kill_grace_s)
            deadline = time.monotonic() + self.config.kill_grace_s + 5
            while self.tracked and time.monotonic() < deadline:
                self.tick(claim=False)
                self._wait(max_s=0.1)
        for tracked in self.tracked.values():
            if tracked.spawned is not None:
                # Drop our end of the report pipe without waiting: the shim lives on.
                with contextlib.suppress(OSError):
                    tracked.spawned.shim.stdout.close()  # type: ignore[union-attr]
        for killer in self.leftovers:
            killer.finish(settle_s=0.5)
        for shim in self.exiting_shims:
            with contextlib.suppress(subprocess.TimeoutExpired):
                shim.wait(timeout=5)
        try:
            self._apply_pending_ends()
            self.store.stop_worker(self.worker_id)
        except DB_ERRORS as exc:
            # Unrecorded ends stay in the shims' status files; the next worker on this
            # host records them from there (recover()).
            log.error(
                "database unreachable at exit (%s); %d ends left to recovery",
                _db_error_line(exc),
                len(self.pending_ends),
            )
        if self._wake is not None:
            self._wake.close()

    # -- database outages

    def _db_unreachable(self, exc: Exception) -> None:
        """Wait before the next try: exponential backoff with jitter, so a fleet of
        workers does not hammer a server that is coming back up."""
        self._db_ok_since = None
        self._db_failures += 1
        delay = min(
            self.config.db_retry_cap_s, self.config.db_retry_base_s * 2 ** (self._db_failures - 1)
        )
        delay *= random.uniform(0.5, 1.0)
        log.warning(
            "database unreachable, retrying in %.1fs (attempt %d; runs keep running): %s",
            delay,
            self._db_failures,
            _db_error_line(exc),
        )
        # Not select(): a finished run's report pipe stays readable and would end the
        # wait at once. Short slices keep a stop request and pending KILLs timely.
        deadline = time.monotonic() + delay
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.2, left))
            with contextlib.suppress(*DB_ERRORS):
                self._advance_killers()  # a TERM's grace still ends in a KILL meanwhile

    def _db_ok(self) -> None:
        if self._db_failures:
            log.info("database reachable again after %d failed attempts", self._db_failures)
        self._db_failures = 0
        if self._db_ok_since is None:
            self._db_ok_since = time.monotonic()

    def _apply_pending_ends(self) -> None:
        for run_id in list(self.pending_ends):
            self.pending_ends.pop(run_id)()  # re-queues itself if the database fails again
            if run_id in self.pending_ends:
                raise DatabaseUnreachable("still cannot record run ends")

    def _idle(self) -> bool:
        if self.tracked or self.leftovers or self.exiting_shims:
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
        timeout = self.config.poll_s if max_s is None else max_s
        now = time.monotonic()
        for tracked in self.tracked.values():
            if tracked.killer is not None:
                timeout = min(
                    timeout, max(0.0, tracked.killer.started_at + tracked.killer.grace_s - now)
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
        self._apply_pending_ends()
        claim = claim and not self.stopping
        # Claim before any bookkeeping: a nudge from `add` is answered first (recording
        # the ends below costs a write each), then slots those ends freed are refilled.
        if claim:
            self._claim()
        ended = self._collect_ends()
        if claim and ended:
            self._claim()
        self.exiting_shims = [p for p in self.exiting_shims if p.poll() is None]
        self._act_on_requests()
        self._enforce_timeouts(now)
        self._advance_killers()
        self._watch_activity(now)
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
            )
        except (SpawnError, sessions.SessionError, OSError) as exc:
            self._finish(run, run.claim_token, Status.FAILED, reason=str(exc))
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
            self._finish(run, tracked.token, Status.FAILED, reason=spawned.start_error)
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
            TreeKill(self._target_of(run, spawned), 0).finish()
            spawned.close()
            return False
        tracked.run = _with(
            run,
            pid=spawned.pid,
            pid_create_time=spawned.pid_create_time,
            pgid=spawned.pgid,
            shim_pid=spawned.shim.pid,
            shim_create_time=spawned.shim_create_time,
        )
        tracked.recorded = True
        return True

    def _target_of(self, run: RunRecord, spawned: Spawned) -> RunTarget:
        return RunTarget(
            run_id=run.id,
            home=self.home,
            attempt=run.attempt,
            pid=spawned.pid,
            pid_create_time=spawned.pid_create_time,
            pgid=spawned.pgid,
            shim_pid=spawned.shim.pid,
            shim_create_time=spawned.shim_create_time,
        )

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
            exit_info = self._exit_info(tracked)
            if exit_info is None:
                continue
            self._on_end(tracked, exit_info)
        return before - len(self.tracked)

    def _exit_info(self, tracked: Tracked) -> dict | None:
        spawned = tracked.spawned
        if spawned is not None:
            if spawned.exit_report is None:
                spawned.read_reports()
            if spawned.exit_report is not None:
                return dict(spawned.exit_report)
            if spawned.shim.poll() is None:
                return None
            # The shim ended without telling us: its status file is the record.
        status = _read_status(tracked.status_path, tracked.run.attempt)
        if status is not None and ("exit_code" in status or "signal" in status):
            return status
        run = tracked.run
        if spawned is None and (
            is_alive(run.shim_pid, run.shim_create_time) or is_alive(run.pid, run.pid_create_time)
        ):
            return None
        return {"unknown": True}

    def _on_end(self, tracked: Tracked, exit_info: dict) -> None:
        run = self.store.get_run(tracked.run.id)
        with contextlib.suppress(OSError):
            self._store_tail(tracked, tracked.log_path.stat().st_size, final=True)
        exit_code = exit_info.get("exit_code")
        sig = exit_info.get("signal")
        status_info = _read_status(tracked.status_path, run.attempt) or {}
        output_bytes = status_info.get("output_bytes")
        self._note_truncation(tracked, output_bytes)
        if exit_info.get("unknown"):
            status, reason = Status.LOST, "the run's shim vanished; its exit status is unknown"
        elif run.stop_cause == "timeout":
            status, reason = Status.TIMED_OUT, f"timed out after {run.timeout_s:g}s"
        elif run.stop_cause == "kill" or (run.kill_requested and tracked.killer is not None):
            status, reason = Status.CANCELLED, f"killed by user ({describe_exit(exit_code, sig)})"
        elif run.stop_cause == "cancel":
            status, reason = (
                Status.CANCELLED,
                f"cancelled by user ({describe_exit(exit_code, sig)})",
            )
        elif run.stop_cause == "shutdown":
            status, reason = Status.CANCELLED, "stopped with the worker (--stop-runs)"
        elif exit_code == 0 and sig is None:
            status, reason = Status.SUCCEEDED, "exit 0"
        else:
            status, reason = Status.FAILED, describe_exit(exit_code, sig)
        self._finish(
            run,
            tracked.token,
            status,
            reason=reason,
            exit_code=exit_code,
            sig=sig,
            output_bytes=output_bytes,
        )
        tracked.ended = True
        if status is Status.SUCCEEDED and run.worktree and not run.keep_worktree:
            self._remove_worktree(run)
        if run.leased:
            # Its leases are free now: a worker waiting on them need not wait a poll.
            try:
                wake_workers(self.store)
            except Exception as exc:  # a missed nudge costs one poll interval, no more
                log.debug("could not nudge workers after run %s: %s", run.id, exc)
        # The shim knows (as subreaper) whether the command left processes behind;
        # without its report (adopted runs) we look.
        self._forget(tracked, leftovers=bool(exit_info.get("leftovers", True)))

    def _remove_worktree(self, run: RunRecord) -> None:
        """A succeeded run's worktree goes (its branch stays: that is the work); one
        with uncommitted changes, or still used by a queued resume, stays."""
        assert run.worktree and run.worktree_repo
        try:
            users = self.store.list_runs([Status.QUEUED, Status.RUNNING], session_id=run.session_id)
            others = [r.id for r in users if r.worktree == run.worktree and r.id != run.id]
            if others:
                note = f"worktree {run.worktree} kept: run {others[0]} of this session uses it"
            elif workspaces.remove_worktree(run.worktree_repo, Path(run.worktree)):
                note = f"worktree {run.worktree} removed; branch {run.worktree_branch} kept"
            else:
                note = f"worktree {run.worktree} kept: it has uncommitted changes"
            self.store.add_event(run.id, "worktree", note, actor=f"worker:{self.worker_id}")
        except Exception as exc:  # cleanup is best effort: it must never lose a run end
            log.warning("run %s: worktree %s not removed: %s", run.id, run.worktree, exc)

    def _finish(
        self,
        run: RunRecord,
        token: str,
        status: Status,
        *,
        reason: str,
        exit_code: int | None = None,
        sig: int | None = None,
        output_bytes: int | None = None,
    ) -> None:
        actor = f"worker:{self.worker_id}"
        try:
            if status is Status.FAILED and run.attempt <= run.max_retries:
                delay = min(
                    self.config.retry_cap_s, self.config.retry_base_s * 2 ** (run.attempt - 1)
                )
                delay *= random.uniform(0.5, 1.0)  # jitter: retries of many runs spread out
                self.store.requeue_for_retry(
                    run.id,
                    token,
                    not_before=self.now() + delay,
                    reason=f"{reason}; retry {run.attempt} of {run.max_retries} in {delay:.1f}s",
                    exit_code=exit_code,
                    signal=sig,
                    actor=actor,
                )
                return
            self.store.finish_run(
                run.id,
                token,
                status,
                reason=reason,
                exit_code=exit_code,
                signal=sig,
                output_bytes=output_bytes,
                actor=actor,
            )
        except StaleClaimError:
            log.warning("run %s: finished, but another worker owns it now", run.id)
        except IllegalTransitionError as exc:
            # A retry of an end whose commit reached the server before the connection
            # broke finds the run already ended by us: nothing is lost.
            log.warning("run %s: end already recorded (%s)", run.id, exc)
        except DB_ERRORS:
            log.warning(
                "run %s ended (%s) but the database is unreachable; recording it on reconnect",
                run.id,
                reason,
            )
            self.pending_ends[run.id] = functools.partial(
                self._finish,
                run,
                token,
                status,
                reason=reason,
                exit_code=exit_code,
                sig=sig,
                output_bytes=output_bytes,
            )

    def _forget(self, tracked: Tracked, *, leftovers: bool) -> None:
        self.tracked.pop(tracked.run.id, None)
        target = RunTarget.of(tracked.run, self.home)
        if tracked.spawned is not None:
            tracked.spawned.close()
        if leftovers:
            # Whatever the command left behind (daemonized children, setsid escapees)
            # dies with it: TERM now, KILL after a short grace.
            killer = TreeKill(target, self.config.leftover_grace_s)
            if killer.start(time.monotonic()):
                self.leftovers.append(killer)
        if tracked.spawned is not None:
            self.exiting_shims.append(tracked.spawned.shim)  # reaped by later ticks

    # -- cancel, kill, timeout

    def _act_on_requests(self) -> None:
        if not self.tracked:
            return
        fresh = {r.id: r for r in self.store.list_runs([Status.RUNNING], worker_id=self.worker_id)}
        for run_id, tracked in list(self.tracked.items()):
            run = fresh.get(run_id)
            if run is None or run.claim_token != tracked.token:
                self._fenced_out(tracked)
                continue
            tracked.run = run
            if run.kill_requested and tracked.killer_cause != "kill":
                self._begin_stop(tracked, "kill", 0.0)
            elif run.cancel_requested and tracked.killer is None:
                grace = run.cancel_grace_s if run.cancel_grace_s is not None else 10.0
                self._begin_stop(tracked, "cancel", grace)
            elif run.stop_cause and tracked.killer is None:
                # Adopted mid-stop: pick the stop up where the dead worker left it.
                self._begin_stop(tracked, run.stop_cause, self.config.kill_grace_s)

    def _fenced_out(self, tracked: Tracked) -> None:
        """Another worker took this run from us: a local one adopted it (let go), or
        another host declared us dead and ended the attempt (stop what we launched)."""
        run_id = tracked.run.id
        self.tracked.pop(run_id, None)
        current = self.store.get_run(run_id)
        adopted_here = (
            current.status is Status.RUNNING
            and current.host == self.store.host
            and current.attempt == tracked.run.attempt
        )
        if adopted_here or tracked.spawned is None:
            log.warning("run %s is no longer ours; letting go", run_id)
            if tracked.spawned is not None:
                tracked.spawned.close()
            return
        # This host launched it, so this host may (and alone may) signal it: the attempt
        # is over in the table and must not run on next to its retry.
        log.warning(
            "run %s attempt %s was ended by another host (%s); stopping its processes here",
            run_id,
            tracked.run.attempt,
            current.reason,
        )
        TreeKill(self._target_of(tracked.run, tracked.spawned), 0).finish(settle_s=0.5)
        self._forget(tracked, leftovers=False)
        self.store.add_event(
            run_id,
            "abandoned",
            f"attempt {tracked.run.attempt} was still running on {self.store.host} after "
            "being ended elsewhere; its process tree was killed there",
            actor=f"worker:{self.worker_id}",
        )

    def _enforce_timeouts(self, now: float) -> None:
        for tracked in self.tracked.values():
            run = tracked.run
            if (
                run.timeout_s is not None
                and run.started_at is not None
                and tracked.killer is None
                and now - run.started_at >= run.timeout_s
            ):
                self._begin_stop(tracked, "timeout", self.config.kill_grace_s)

    def _begin_stop(self, tracked: Tracked, cause: str, grace_s: float) -> None:
        reasons = {
            "timeout": f"timeout of {tracked.run.timeout_s}s reached: TERM, then KILL after {grace_s:g}s",
            "cancel": f"cancelling: TERM, then KILL after {grace_s:g}s",
            "kill": "killing the process tree now",
            "shutdown": f"worker stopping with --stop-runs: TERM, then KILL after {grace_s:g}s",
        }
        with contextlib.suppress(StaleClaimError):
            self.store.mark_stopping(
                tracked.run.id, tracked.token, cause, reasons[cause], override=cause == "kill"
            )
        tracked.killer_cause = cause
        tracked.killer = TreeKill(RunTarget.of(tracked.run, self.home), grace_s)
        if grace_s <= 0:
            tracked.killer.started_at = time.monotonic()
            self._report_survivors(tracked.run.id, tracked.killer.finish(settle_s=0.5))
        else:
            tracked.killer.start(time.monotonic())

    def _advance_killers(self) -> None:
        now = time.monotonic()
        for tracked in self.tracked.values():
            killer = tracked.killer
            if killer is not None and killer.grace_s > 0 and killer.due(now):
                killer.grace_s = 0  # KILL once; the end comes through the shim's report
                self._report_survivors(tracked.run.id, killer.finish(settle_s=0.5))
        still: list[TreeKill] = []
        for killer in self.leftovers:
            if killer.due(now):
                killer.finish(settle_s=0.5)
            else:
                still.append(killer)
        self.leftovers = still

    def _report_survivors(self, run_id: int, survivors: list[psutil.Process]) -> None:
        if survivors:
            pids = ", ".join(str(p.pid) for p in survivors)
            self.store.add_event(
                run_id,
                "kill_failed",
                f"could not kill pids {pids}",
                actor=f"worker:{self.worker_id}",
            )

    # -- activity and hung detection

    def _note_truncation(self, tracked: Tracked, size: int | None) -> None:
        """One event the first time a run's log reaches the cap."""
        if size is None or size < self.config.log_cap or tracked.truncated:
            return
        tracked.truncated = True
        self.store.add_event(
            tracked.run.id,
            "output_truncated",
            f"output reached the cap of {self.config.log_cap} bytes; further output is discarded",
            actor=f"worker:{self.worker_id}",
        )

    def _watch_activity(self, now: float) -> None:
        for tracked in self.tracked.values():
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
                self._note_truncation(tracked, size)
            self._store_tail(tracked, size)
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
                tracked.run = run = _with(run, activity_at=active_at)
                if run.hung:
                    self.store.set_hung(run.id, tracked.token, False, "activity resumed")
                    tracked.run = _with(run, hung=False)
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
                tracked.run = _with(run, hung=True)

    def _store_tail(self, tracked: Tracked, size: int, *, final: bool = False) -> None:
        """Shared stores: keep the run's output tail in the database (at most every
        `output_tail_s`) for TUIs on hosts that cannot read this host's files."""
        if not self.store.shared or size < 0 or size == tracked.tail_size:
            return
        mono = time.monotonic()
        if not final and mono - tracked.tail_at < self.config.output_tail_s:
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

    # -- rescue of dead workers on other hosts (shared stores)

    def rescue(self) -> None:
        """End the runs of workers on other hosts that stopped heartbeating."""
        self._last_rescue = time.monotonic()
        ok_since = self._db_ok_since
        if ok_since is None or time.monotonic() - ok_since < self.config.rescue_after_s:
            # After an outage every worker was silent; give the living ones a whole
            # horizon to heartbeat again before calling anyone dead.
            return
        for run in self.store.rescue_dead_workers(
            self.config.rescue_after_s,
            rescuer=f"worker:{self.worker_id}",
            skip_host=self.store.host,
        ):
            log.warning("run %s: %s", run.id, run.reason)
        if time.monotonic() - self._last_prune >= self.config.prune_s:
            self._last_prune = time.monotonic()
            pruned = self.store.prune_output_tails(self.config.output_tail_keep_s)
            if pruned:
                log.info("dropped %d stored output tails of runs that ended long ago", pruned)

    # -- recovery

    def recover(self) -> None:
        """Adopt or finalize running runs on this host whose worker is dead."""
        self._last_recovery = time.monotonic()
        workers = {w.id: w for w in self.store.workers(host=self.store.host)}
        for run in self.store.list_runs([Status.RUNNING], host=self.store.host):
            if run.worker_id == self.worker_id or run.id in self.tracked:
                continue
            owner = workers.get(run.worker_id or "")
            if owner is not None and self._worker_alive(owner):
                continue
            with contextlib.suppress(StaleClaimError):
                self._recover_run(run, owner)

    def _worker_alive(self, worker: WorkerRecord) -> bool:
        if worker.stopped_at is not None:
            return False
        if worker.boot_id != self.boot:
            return False
        return is_alive(worker.pid, worker.pid_create_time)

    def _recover_run(self, run: RunRecord, owner: WorkerRecord | None) -> None:
        who = f"worker {run.worker_id}" if owner is None else f"worker {owner.id} (pid {owner.pid})"
        _, run_dir = run_paths(self.home, run)
        status = _read_status(run_dir / sessions.STATUS_FILE, run.attempt) or {}
        if run.pid is None and "pid" in status:
            # The worker died between spawn and recording it: the shim's record has the pids.
            run = _with(
                run,
                pid=status["pid"],
                pgid=status.get("pgid"),
                pid_create_time=create_time_from_ticks(status["starttime"]),
                shim_pid=status.get("shim_pid"),
                shim_create_time=create_time_from_ticks(status["shim_starttime"])
                if status.get("shim_starttime") is not None
                else None,
            )
        same_boot = owner is None or owner.boot_id == self.boot
        shim_alive = same_boot and is_alive(run.shim_pid, run.shim_create_time)
        cmd_alive = same_boot and is_alive(run.pid, run.pid_create_time)
        token = run.claim_token or ""
        if shim_alive or cmd_alive:
            new_token = self.store.adopt_run(
                run.id,
                run.claim_token,
                self.worker_id,
                f"adopted from dead {who}: process {run.pid} still running",
            )
            if run.pid is not None and self.store.get_run(run.id).pid is None:
                self.store.record_spawn(
                    run.id,
                    new_token,
                    pid=run.pid,
                    pid_create_time=run.pid_create_time or 0.0,
                    pgid=run.pgid or run.pid,
                    shim_pid=run.shim_pid or 0,
                    shim_create_time=run.shim_create_time or 0.0,
                )
            adopted = self.store.get_run(run.id)
            tracked = Tracked(run=adopted, token=new_token, run_dir=run_dir)
            self.tracked[run.id] = tracked
            return
        if "exit_code" in status or "signal" in status:
            exit_code, sig = status.get("exit_code"), status.get("signal")
            final_status = Status.SUCCEEDED if exit_code == 0 and sig is None else Status.FAILED
            reason = describe_exit(exit_code, sig)
            if run.stop_cause == "timeout":
                final_status, reason = Status.TIMED_OUT, f"timed out after {run.timeout_s:g}s"
            elif run.stop_cause in ("cancel", "kill", "shutdown"):
                final_status = Status.CANCELLED
                reason = f"{'killed' if run.stop_cause == 'kill' else 'cancelled'} ({reason})"
            self.store.finish_run(
                run.id,
                token,
                final_status,
                reason=f"{reason} (ended while {who} was down; recorded from the run's status file)",
                exit_code=exit_code,
                signal=sig,
                output_bytes=status.get("output_bytes"),
                actor=f"worker:{self.worker_id}",
            )
            return
        if "spawn_error" in status:
            self.store.finish_run(
                run.id,
                token,
                Status.FAILED,
                reason=status["spawn_error"],
                actor=f"worker:{self.worker_id}",
            )
            return
        if run.pid is None and run.shim_pid is None and not status:
            unstarted = self._never_started(run, owner)
            if unstarted is None:
                return  # a shim may still be starting it: decide at the next recovery
            if unstarted:
                self.store.requeue_unstarted(
                    run.id,
                    token,
                    reason=f"claimed by {who}, which died before starting it; requeued"
                    f" (attempt {run.attempt} not used up)",
                    actor=f"worker:{self.worker_id}",
                )
                return
        reason = (
            f"lost: {who} died and the process is gone; its exit status is unknown"
            if run.pid is not None or status
            else f"lost: {who} died before the process was started"
        )
        self.store.finish_run(
            run.id, token, Status.LOST, reason=reason, actor=f"worker:{self.worker_id}"
        )

    def _never_started(self, run: RunRecord, owner: WorkerRecord | None) -> bool | None:
        """For a run with no pid recorded and no status file: True when it is certain
        that no process of this attempt was started, None while a shim that nobody
        recorded still lives (it may yet start the command and write its status file),
        False when it cannot be known (the owner is unknown or ran before a reboot)."""
        if owner is None or owner.boot_id != self.boot:
            return False
        # The shim writes its status file right after starting the command, so a
        # command without one means a shim killed in between: look for it by its tag.
        target = RunTarget(
            run_id=run.id,
            home=self.home,
            attempt=run.attempt,
            pid=None,
            pid_create_time=None,
            pgid=None,
            shim_pid=None,
            shim_create_time=None,
        )
        if find_run_processes(target):
            return False
        # Claim time is the store's clock; the shims' start times are this host's.
        since = (run.started_at or 0.0) + (self.store.clock_skew_s or 0.0) - 2.0
        _, run_dir = run_paths(self.home, run)
        if _shims_that_may_start(self.store, run_dir / sessions.OUTPUT_LOG, since=since):
            return None
        return True


def _shims_that_may_start(store: Store, log_path: Path, *, since: float) -> list[int]:
    """Live run shims on this host, started since `since` and recorded by no running
    run, that may be starting the run logging to `log_path`. A shim opens its run's log
    before it starts the command, so one holding another log is not this run's; one
    holding ours, or none yet, may be."""
    recorded = {
        r.shim_pid for r in store.list_runs([Status.RUNNING], host=store.host) if r.shim_pid
    }
    shim, ours = str(SHIM_PATH), str(log_path)
    found = []
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        info = proc.info
        if proc.pid in recorded or shim not in (info.get("cmdline") or ()):
            continue
        if (info.get("create_time") or 0.0) + CREATE_TIME_TOLERANCE_S < since:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            logs = {f.path for f in proc.open_files() if f.path.endswith(sessions.OUTPUT_LOG)}
        except psutil.NoSuchProcess:
            continue
        except psutil.Error:
            logs = set()
        if not logs or ours in logs:
            found.append(proc.pid)
    return found


def _with(run: RunRecord, **changes: object) -> RunRecord:
    import dataclasses

    return dataclasses.replace(run, **changes)  # type: ignore[arg-type]


def _read_status(path: Path, attempt: int) -> dict | None:
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
