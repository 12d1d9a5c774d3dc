"""Recovery and rescue: adopt or finalize the runs on this host whose worker died, end
the processes of attempts that ended while no worker ran here, and (shared stores) end
the runs of dead workers on other hosts."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from qqtui.core import sessions
from qqtui.core.intents import run_paths
from qqtui.core.procs.kill import find_run_processes
from qqtui.core.procs.pids import (
    CREATE_TIME_TOLERANCE_S,
    RunTarget,
    boot_id,
    create_time_from_ticks,
    is_alive,
)
from qqtui.core.procs.spawn import SHIM_PATH
from qqtui.core.records import NotFoundError, RunRecord, StaleClaimError, Status, WorkerRecord
from qqtui.core.runends import describe_exit
from qqtui.core.store import Store
from qqtui.core.strays import end_strays, find_strays
from qqtui.core.tracked import Tracked, read_status, with_changes

log = logging.getLogger("qqtui.supervisor")


@dataclass(slots=True)
class Recovery:
    """Takes over, or ends, runs whose worker is gone; adopted runs join `tracked`
    (shared with the supervisor)."""

    store: Store
    home: Path
    worker_id: str
    tracked: dict[int, Tracked]
    rescue_after_s: float  # shared stores: a worker silent this long is dead
    output_tail_keep_s: float  # an ended run's stored output tail is kept this long
    prune_s: float  # how often the expired tails are dropped
    boot: str = field(default_factory=boot_id)
    _last_prune: float = -math.inf  # the first rescue pass prunes too

    def recover(self) -> None:
        """Adopt or finalize running runs on this host whose worker is dead."""
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
        status = read_status(run_dir / sessions.STATUS_FILE, run.attempt) or {}
        if run.pid is None and "pid" in status:
            # The worker died between spawn and recording it: the shim's record has the pids.
            run = with_changes(
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

    def stop_strays(self) -> None:
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

    def rescue(self, ok_since: float | None) -> None:
        """End the runs of workers on other hosts that stopped heartbeating; `ok_since`
        is the monotonic time since the database answers again (None: it does not)."""
        if ok_since is None or time.monotonic() - ok_since < self.rescue_after_s:
            # After an outage every worker was silent; give the living ones a whole
            # horizon to heartbeat again before calling anyone dead.
            return
        for run in self.store.rescue_dead_workers(
            self.rescue_after_s,
            rescuer=f"worker:{self.worker_id}",
            skip_host=self.store.host,
        ):
            log.warning("run %s: %s", run.id, run.reason)
        if time.monotonic() - self._last_prune >= self.prune_s:
            self._last_prune = time.monotonic()
            pruned = self.store.prune_output_tails(self.output_tail_keep_s)
            if pruned:
                log.info("dropped %d stored output tails of runs that ended long ago", pruned)


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
