"""A worker's writes to the runs it owns: fenced owner updates, and every status
transition with its event (the end of an attempt, a requeue, an adoption).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select, update

from qqtui.core.models import runs_table
from qqtui.core.records import (
    FINAL_STATUSES,
    RUN_FIELDS,
    RUN_STORED_FIELDS,
    IllegalTransitionError,
    RunRecord,
    StaleClaimError,
    Status,
    UpdateConflictError,
    transition_allowed,
)
from qqtui.core.store.base import StoreBase

# How often a write that lost an optimistic race re-reads and tries again before it
# raises UpdateConflictError.
MAX_RACE_RETRIES = 3

# Fields reset when an attempt ends and the run goes back to the queue.
ATTEMPT_FIELDS_RESET: dict[str, Any] = {
    "pid": None,
    "pid_create_time": None,
    "pgid": None,
    "shim_pid": None,
    "shim_create_time": None,
    "worker_id": None,
    "claim_token": None,
    "heartbeat_at": None,
    "hung": False,
    "waiting": False,
    "waiting_reason": None,
    "waiting_since": None,
    "cancel_requested": False,
    "kill_requested": False,
    "cancel_grace_s": None,
    "stop_cause": None,
}


# An ended run waits for nobody, and is hung no more.
WAITING_RESET: dict[str, Any] = {
    "hung": False,
    "waiting": False,
    "waiting_reason": None,
    "waiting_since": None,
}


_SCALAR_COLUMNS = frozenset(f.name for f in RUN_STORED_FIELDS if f.kind != "json")


def _assignments(values: dict[str, Any]) -> str:
    """`col = :set_col, ...` for a driver-level UPDATE of scalar run columns (the
    names come from this module, never from input; JSON columns go through Core)."""
    unknown = set(values) - _SCALAR_COLUMNS
    if unknown:
        raise ValueError(f"not a scalar run column: {sorted(unknown)}")
    return ", ".join(f"{name} = :set_{name}" for name in values)


def _set_params(values: dict[str, Any]) -> dict[str, Any]:
    return {f"set_{name}": value for name, value in values.items()}


class TransitionsMixin(StoreBase):
    """The owner's fenced writes, and the optimistic transition every status change takes."""

    # -- owner writes (fenced by the claim token, no version bump: they carry no decision)

    def _owner_update(self, run_id: int, token: str, **values: Any) -> bool:
        with self._write() as conn:
            return (
                self._execute(
                    conn,
                    f"UPDATE runs SET {_assignments(values)} WHERE id = :id"
                    " AND claim_token = :token AND status = 'running'",
                    {**_set_params(values), "id": run_id, "token": token},
                )
                == 1
            )

    def record_spawn(
        self,
        run_id: int,
        token: str,
        *,
        pid: int,
        pid_create_time: float,
        pgid: int,
        shim_pid: int,
        shim_create_time: float,
    ) -> None:
        if not self._owner_update(
            run_id,
            token,
            pid=pid,
            pid_create_time=pid_create_time,
            pgid=pgid,
            shim_pid=shim_pid,
            shim_create_time=shim_create_time,
        ):
            raise StaleClaimError(f"run {run_id}: claim superseded before its spawn was recorded")

    def record_activity(
        self, run_id: int, token: str, *, activity_at: float, output_bytes: int
    ) -> bool:
        return self._owner_update(run_id, token, activity_at=activity_at, output_bytes=output_bytes)

    def set_hung(self, run_id: int, token: str, hung: bool, reason: str) -> bool:
        """Flip the hung flag and log one event for the flip."""
        with self._write() as conn:
            result = conn.execute(
                update(runs_table)
                .where(
                    runs_table.c.id == run_id,
                    runs_table.c.claim_token == token,
                    runs_table.c.status == str(Status.RUNNING),
                    runs_table.c.hung == (not hung),
                )
                .values(hung=hung)
            )
            if result.rowcount != 1:
                return False
            self._event(conn, run_id, "hung" if hung else "unhung", reason=reason)
            return True

    def set_waiting(self, run_id: int, token: str, waiting: bool, reason: str, source: str) -> bool:
        """Flip the "needs you" flag of a running run and log one event for the flip
        ("waiting" or "ready", its reason prefixed by `source`). A run that starts
        waiting stops being hung. True when the flag flipped; a run already waiting
        only gets its reason updated (no event), so the newest report is what shows."""
        values: dict[str, Any] = (
            {
                "waiting": True,
                "waiting_reason": reason,
                "waiting_since": self.clock(),
                "hung": False,
            }
            if waiting
            else {"waiting": False, "waiting_reason": None, "waiting_since": None}
        )
        fenced = (
            runs_table.c.id == run_id,
            runs_table.c.claim_token == token,
            runs_table.c.status == str(Status.RUNNING),
        )
        with self._write() as conn:
            hung = conn.execute(
                select(runs_table.c.hung).where(*fenced, runs_table.c.waiting == (not waiting))
            ).scalar()
            if hung is None:
                if waiting:
                    conn.execute(
                        update(runs_table)
                        .where(*fenced, runs_table.c.waiting.is_(True))
                        .where(
                            or_(
                                runs_table.c.waiting_reason.is_(None),
                                runs_table.c.waiting_reason != reason,
                            )
                        )
                        .values(waiting_reason=reason)
                    )
                return False
            result = conn.execute(
                update(runs_table)
                .where(*fenced, runs_table.c.waiting == (not waiting))
                .values(**values)
            )
            if result.rowcount != 1:
                return False
            if waiting and hung:
                self._event(conn, run_id, "unhung", reason="it waits for its user")
            self._event(
                conn, run_id, "waiting" if waiting else "ready", reason=f"{source}: {reason}"
            )
            return True

    def mark_stopping(
        self, run_id: int, token: str, cause: str, reason: str, *, override: bool = False
    ) -> bool:
        """Remember why we are terminating a run (timeout, cancel, kill) so the end is
        recorded right even if this supervisor dies before the process does."""
        with self._write() as conn:
            result = conn.execute(
                update(runs_table)
                .where(
                    runs_table.c.id == run_id,
                    runs_table.c.claim_token == token,
                    runs_table.c.status == str(Status.RUNNING),
                    # First cause wins, except that a kill supersedes a slower stop.
                    or_(runs_table.c.stop_cause.is_(None), runs_table.c.stop_cause != cause)
                    if override
                    else runs_table.c.stop_cause.is_(None),
                )
                .values(stop_cause=cause)
            )
            if result.rowcount != 1:
                return False
            self._event(conn, run_id, "stopping", reason=reason)
            return True

    def heartbeat_runs(self, worker_id: str, run_ids: Sequence[int]) -> None:
        """One statement for every run this worker supervises."""
        if not run_ids:
            return
        ids = {f"id_{i}": run_id for i, run_id in enumerate(run_ids)}
        with self._write() as conn:
            self._execute(
                conn,
                "UPDATE runs SET heartbeat_at = :now WHERE worker_id = :worker"
                f" AND status = 'running' AND id IN ({', '.join(f':{k}' for k in ids)})",
                {**ids, "now": self.clock(), "worker": worker_id},
            )

    # -- transitions

    def _transition(
        self,
        run_id: int,
        new: Status,
        *,
        reason: str,
        values: dict[str, Any] | None = None,
        token: str | None = None,
        expect: frozenset[Status] | None = None,
        actor: str | None = None,
        kind: str = "transition",
    ) -> RunRecord:
        """Optimistic transition: read, check, conditional UPDATE on (status, version
        [, token]); a lost race is retried, then raised as UpdateConflictError."""
        for _ in range(MAX_RACE_RETRIES + 1):
            current = self.get_run(run_id)
            if token is not None and current.claim_token != token:
                raise StaleClaimError(f"run {run_id}: this worker no longer owns it")
            if expect is not None and current.status not in expect:
                raise IllegalTransitionError(
                    f"run {run_id} is {current.status}, cannot move it to {new}"
                )
            if not transition_allowed(current.status, new):
                raise IllegalTransitionError(
                    f"run {run_id} is {current.status}, cannot move it to {new}"
                )
            if self._between_read_and_write is not None:
                self._between_read_and_write(run_id)
            sets = {"status": str(new), "reason": reason, **(values or {})}
            fenced = " AND claim_token = :token" if token is not None else ""
            with self._write() as conn:
                updated = self._select_runs(
                    conn,
                    "",
                    {
                        **_set_params(sets),
                        "id": run_id,
                        "old_status": str(current.status),
                        "old_version": current.version,
                        "token": token,
                    },
                    sql=f"UPDATE runs SET {_assignments(sets)}, version = version + 1"
                    f" WHERE id = :id AND status = :old_status AND version = :old_version"
                    f"{fenced} RETURNING {', '.join(RUN_FIELDS)}",
                )
                if not updated:
                    continue  # lost the race: re-read and decide again
                self._event(
                    conn,
                    run_id,
                    kind,
                    from_status=str(current.status),
                    to_status=str(new),
                    reason=reason,
                    actor=actor,
                )
                return updated[0]
        raise UpdateConflictError(
            f"run {run_id} kept changing under us; gave up after {MAX_RACE_RETRIES} retries"
        )

    def finish_run(
        self,
        run_id: int,
        token: str,
        status: Status,
        *,
        reason: str,
        exit_code: int | None = None,
        signal: int | None = None,
        output_bytes: int | None = None,
        actor: str | None = None,
    ) -> RunRecord:
        """End the current attempt; fenced by the claim token."""
        if status not in FINAL_STATUSES:
            raise IllegalTransitionError(f"{status} is not an end state")
        values: dict[str, Any] = {
            "finished_at": self.clock(),
            "exit_code": exit_code,
            "signal": signal,
            **WAITING_RESET,
        }
        if output_bytes is not None:
            values["output_bytes"] = output_bytes
        return self._transition(
            run_id, status, reason=reason, values=values, token=token, actor=actor
        )

    def requeue_for_retry(
        self,
        run_id: int,
        token: str,
        *,
        not_before: float,
        reason: str,
        exit_code: int | None = None,
        signal: int | None = None,
        actor: str | None = None,
    ) -> RunRecord:
        """A failed attempt with retries left goes back to the queue as the next attempt."""
        current = self.get_run(run_id)
        return self._requeue(
            run_id,
            reason=reason,
            expect=frozenset({Status.RUNNING}),
            token=token,
            actor=actor,
            attempt=current.attempt + 1,
            not_before=not_before,
            finished_at=None,
            exit_code=exit_code,
            signal=signal,
        )

    def requeue_unstarted(
        self, run_id: int, token: str, *, reason: str, actor: str | None = None
    ) -> RunRecord:
        """A claimed attempt whose process provably never started goes back to the
        queue as the same attempt (no retry is used up); fenced by the claim token.
        The caller has checked that nothing was started; a recorded pid refuses."""
        current = self.get_run(run_id)
        if current.pid is not None or current.shim_pid is not None:
            raise IllegalTransitionError(
                f"run {run_id} has a recorded process; it did start, cannot requeue it unstarted"
            )
        return self._requeue(
            run_id,
            reason=reason,
            expect=frozenset({Status.RUNNING}),
            token=token,
            actor=actor,
            not_before=None,
            started_at=None,
            finished_at=None,
            activity_at=None,
            exit_code=None,
            signal=None,
        )

    def _requeue(
        self,
        run_id: int,
        *,
        reason: str,
        expect: frozenset[Status],
        token: str | None = None,
        actor: str | None = None,
        **values: Any,
    ) -> RunRecord:
        """Send a run back to the queue: the ended attempt's fields reset, then `values`."""
        return self._transition(
            run_id,
            Status.QUEUED,
            reason=reason,
            values={**ATTEMPT_FIELDS_RESET, **values},
            token=token,
            actor=actor,
            expect=expect,
        )

    def adopt_run(self, run_id: int, old_token: str | None, worker_id: str, reason: str) -> str:
        """Take over a running run whose worker died; returns the new claim token."""
        new_token = uuid.uuid4().hex
        with self._write() as conn:
            cond = [runs_table.c.id == run_id, runs_table.c.status == str(Status.RUNNING)]
            cond.append(
                runs_table.c.claim_token.is_(None)
                if old_token is None
                else runs_table.c.claim_token == old_token
            )
            result = conn.execute(
                update(runs_table)
                .where(*cond)
                .values(
                    worker_id=worker_id,
                    claim_token=new_token,
                    heartbeat_at=self.clock(),
                    host=self.host,
                    version=runs_table.c.version + 1,
                )
            )
            if result.rowcount != 1:
                raise StaleClaimError(f"run {run_id}: someone else took it over first")
            self._event(conn, run_id, "adopted", reason=reason, actor=f"worker:{worker_id}")
        return new_token
