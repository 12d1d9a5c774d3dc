"""Stopping the runs a worker owns: cancel and kill requests, TERM then grace then KILL,
fencing by claim token, and whatever a run leaves behind."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from qqtui.core.procs.kill import TreeKill
from qqtui.core.procs.pids import RunTarget
from qqtui.core.procs.spawn import ShimProcess, Spawned
from qqtui.core.records import DEFAULT_GRACE_S, RunRecord, StaleClaimError, Status
from qqtui.core.store import Store
from qqtui.core.tracked import Tracked, with_spawn

log = logging.getLogger("qqtui.supervisor")

# After a KILL the worker waits this long for the tree to go before reporting
# survivors: shorter than TreeKill's own settle time, since every run waits meanwhile.
LOOP_SETTLE_S = 0.5
# A shim whose run ended is reaped within this long at exit (it exits right after).
SHIM_EXIT_WAIT_S = 5.0


@dataclass(slots=True)
class RunStopper:
    """Stops the runs in `tracked` (shared with the supervisor) and cleans up after them."""

    store: Store
    home: Path
    worker_id: str
    tracked: dict[int, Tracked]
    kill_grace_s: float  # timeouts, --stop-runs, an adopted stop: TERM, this long, KILL
    leftover_grace_s: float  # processes still alive after the command exited
    leftovers: list[TreeKill] = field(default_factory=list)
    exiting_shims: list[ShimProcess] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        """Leftover trees are still being stopped, or ended runs' shims reaped."""
        return bool(self.leftovers or self.exiting_shims)

    def act_on_requests(self) -> None:
        """Start the stops the table asks for; let go of the runs no longer ours."""
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
                self.begin_stop(tracked, "kill", 0.0)
            elif run.cancel_requested and tracked.killer is None:
                grace = run.cancel_grace_s if run.cancel_grace_s is not None else DEFAULT_GRACE_S
                self.begin_stop(tracked, "cancel", grace)
            elif run.stop_cause and tracked.killer is None:
                # Adopted mid-stop: pick the stop up where the dead worker left it.
                self.begin_stop(tracked, run.stop_cause, self.kill_grace_s)

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
        TreeKill(self._target_of(tracked.run, tracked.spawned), 0).finish(settle_s=LOOP_SETTLE_S)
        self.release(tracked, leftovers=False)
        self.store.add_event(
            run_id,
            "abandoned",
            f"attempt {tracked.run.attempt} was still running on {self.store.host} after "
            "being ended elsewhere; its process tree was killed there",
            actor=f"worker:{self.worker_id}",
        )

    def kill_unrecorded(self, run: RunRecord, spawned: Spawned) -> None:
        """Kill a fresh spawn whose attempt another worker fenced us out of before its
        pids were recorded: the tree is found by what the shim reported."""
        TreeKill(self._target_of(run, spawned), 0).finish()
        spawned.close()

    def _target_of(self, run: RunRecord, spawned: Spawned) -> RunTarget:
        return RunTarget.of(with_spawn(run, spawned), self.home)

    def begin_stop(self, tracked: Tracked, cause: str, grace_s: float) -> None:
        """Record why the run stops, then TERM it (KILL after `grace_s`), or KILL now."""
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
            self._report_survivors(tracked.run.id, tracked.killer.finish(settle_s=LOOP_SETTLE_S))
        else:
            tracked.killer.start(time.monotonic())

    def stop_all(self, cause: str) -> None:
        for tracked in self.tracked.values():
            self.begin_stop(tracked, cause, self.kill_grace_s)

    def seconds_to_next_kill(self, now: float, limit: float) -> float:
        """How long the loop may wait before a grace runs out (at most `limit`)."""
        for tracked in self.tracked.values():
            if tracked.killer is not None:
                limit = min(
                    limit, max(0.0, tracked.killer.started_at + tracked.killer.grace_s - now)
                )
        return limit

    def advance_killers(self) -> None:
        """KILL the trees whose grace ran out."""
        now = time.monotonic()
        for tracked in self.tracked.values():
            killer = tracked.killer
            if killer is not None and killer.grace_s > 0 and killer.due(now):
                killer.grace_s = 0  # KILL once; the end comes through the shim's report
                self._report_survivors(tracked.run.id, killer.finish(settle_s=LOOP_SETTLE_S))
        still: list[TreeKill] = []
        for killer in self.leftovers:
            if killer.due(now):
                killer.finish(settle_s=LOOP_SETTLE_S)
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

    def release(self, tracked: Tracked, *, leftovers: bool) -> None:
        """The run is no longer ours to watch: stop what it left behind, if asked."""
        self.tracked.pop(tracked.run.id, None)
        target = RunTarget.of(tracked.run, self.home)
        if tracked.spawned is not None:
            tracked.spawned.close()
        if leftovers:
            # Whatever the command left behind (daemonized children, setsid escapees)
            # dies with it: TERM now, KILL after a short grace.
            killer = TreeKill(target, self.leftover_grace_s)
            if killer.start(time.monotonic()):
                self.leftovers.append(killer)
        if tracked.spawned is not None:
            self.exiting_shims.append(tracked.spawned.shim)  # reaped by later ticks

    def reap_shims(self) -> None:
        self.exiting_shims = [p for p in self.exiting_shims if p.poll() is None]

    def finish_leftovers(self) -> None:
        """At exit: KILL what ended runs left behind, reap their shims."""
        for killer in self.leftovers:
            killer.finish(settle_s=LOOP_SETTLE_S)
        for shim in self.exiting_shims:
            with contextlib.suppress(subprocess.TimeoutExpired):
                shim.wait(timeout=SHIM_EXIT_WAIT_S)
