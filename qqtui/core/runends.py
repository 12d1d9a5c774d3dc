"""Recording how a run ended: its exit as the shim reported it, the final status and
reason, a retry when one is left, and the ends kept while the database is unreachable."""

from __future__ import annotations

import functools
import logging
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qqtui.core import workspaces
from qqtui.core.outage import DB_ERRORS, DatabaseUnreachable
from qqtui.core.procs.pids import is_alive
from qqtui.core.records import IllegalTransitionError, RunRecord, StaleClaimError, Status
from qqtui.core.store import Store
from qqtui.core.tracked import Tracked, read_status

log = logging.getLogger("qqtui.supervisor")


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def describe_exit(exit_code: int | None, sig: int | None) -> str:
    if sig is not None:
        return f"killed by {signal_name(sig)}"
    return f"exit {exit_code}"


def exit_info(tracked: Tracked) -> dict | None:
    """How the run ended (the shim's exit report or status file; {"unknown": True} when
    neither says and its processes are gone), or None while it still runs."""
    spawned = tracked.spawned
    if spawned is not None:
        if spawned.exit_report is None:
            spawned.read_reports()
        if spawned.exit_report is not None:
            return dict(spawned.exit_report)
        if spawned.shim.poll() is None:
            return None
        # The shim ended without telling us: its status file is the record.
    status = read_status(tracked.status_path, tracked.run.attempt)
    if status is not None and ("exit_code" in status or "signal" in status):
        return status
    run = tracked.run
    if spawned is None and (
        is_alive(run.shim_pid, run.shim_create_time) or is_alive(run.pid, run.pid_create_time)
    ):
        return None
    return {"unknown": True}


def end_status(run: RunRecord, exit_info: dict, *, stopped_here: bool) -> tuple[Status, str]:
    """The final status and reason of `run` (as the store has it now) for `exit_info`;
    `stopped_here`: this worker was stopping its tree."""
    exit_code = exit_info.get("exit_code")
    sig = exit_info.get("signal")
    if exit_info.get("unknown"):
        return Status.LOST, "the run's shim vanished; its exit status is unknown"
    if run.stop_cause == "timeout":
        return Status.TIMED_OUT, f"timed out after {run.timeout_s:g}s"
    if run.stop_cause == "kill" or (run.kill_requested and stopped_here):
        return Status.CANCELLED, f"killed by user ({describe_exit(exit_code, sig)})"
    if run.stop_cause == "cancel":
        return Status.CANCELLED, f"cancelled by user ({describe_exit(exit_code, sig)})"
    if run.stop_cause == "shutdown":
        return Status.CANCELLED, "stopped with the worker (--stop-runs)"
    if exit_code == 0 and sig is None:
        return Status.SUCCEEDED, "exit 0"
    return Status.FAILED, describe_exit(exit_code, sig)


@dataclass(slots=True)
class EndRecorder:
    """Writes run ends for one worker, retrying failed runs with backoff."""

    store: Store
    worker_id: str
    now: Callable[[], float]  # the time retries are scheduled by
    retry_base_s: float
    retry_cap_s: float
    # Ends that could not be written (database unreachable), applied on reconnect; the
    # shim's status file stays the durable record meanwhile.
    pending_ends: dict[int, Callable[[], None]] = field(default_factory=dict)

    def finish(
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
                delay = min(self.retry_cap_s, self.retry_base_s * 2 ** (run.attempt - 1))
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
                self.finish,
                run,
                token,
                status,
                reason=reason,
                exit_code=exit_code,
                sig=sig,
                output_bytes=output_bytes,
            )

    def apply_pending(self) -> None:
        """Write the ends kept while the database was unreachable."""
        for run_id in list(self.pending_ends):
            self.pending_ends.pop(run_id)()  # re-queues itself if the database fails again
            if run_id in self.pending_ends:
                raise DatabaseUnreachable("still cannot record run ends")

    def remove_worktree(self, run: RunRecord) -> None:
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
