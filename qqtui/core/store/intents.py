"""What a user asks of a run: cancel it, kill it, retry it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from qqtui.core.models import runs_table
from qqtui.core.records import (
    DEFAULT_GRACE_S,
    FINAL_STATUSES,
    IllegalTransitionError,
    RunRecord,
    Status,
    UpdateConflictError,
)
from qqtui.core.store.transitions import MAX_RACE_RETRIES, TransitionsMixin


class IntentsMixin(TransitionsMixin):
    """A user's requests, turned into transitions or into flags the owner acts on."""

    def request_cancel(
        self, run_id: int, *, grace_s: float = DEFAULT_GRACE_S, actor: str | None = None
    ) -> RunRecord:
        """Cancel: a queued run ends now; a running one is asked to stop (TERM, grace, KILL)."""
        return self._request_stop(run_id, kill=False, grace_s=grace_s, actor=actor)

    def request_kill(self, run_id: int, *, actor: str | None = None) -> RunRecord:
        """Kill: a queued run ends now; a running one's tree gets SIGKILL at once."""
        return self._request_stop(run_id, kill=True, grace_s=0.0, actor=actor)

    def _request_stop(
        self, run_id: int, *, kill: bool, grace_s: float, actor: str | None
    ) -> RunRecord:
        verb, infinitive = ("killed", "kill") if kill else ("cancelled", "cancel")
        for _ in range(MAX_RACE_RETRIES + 1):
            current = self.get_run(run_id)
            if current.status is Status.QUEUED:
                try:
                    return self._transition(
                        run_id,
                        Status.CANCELLED,
                        reason=f"{verb} by user before it started",
                        values={"finished_at": self.clock()},
                        expect=frozenset({Status.QUEUED}),
                        actor=actor,
                    )
                except IllegalTransitionError:
                    continue  # claimed meanwhile: handle it as running
            if current.status is not Status.RUNNING:
                raise IllegalTransitionError(
                    f"run {run_id} is already {current.status}; nothing to {infinitive}"
                )
            if self._between_read_and_write is not None:
                self._between_read_and_write(run_id)
            values: dict[str, Any] = (
                {"kill_requested": True}
                if kill
                else {"cancel_requested": True, "cancel_grace_s": grace_s}
            )
            with self._write() as conn:
                result = conn.execute(
                    update(runs_table)
                    .where(
                        runs_table.c.id == run_id,
                        runs_table.c.status == str(Status.RUNNING),
                        runs_table.c.version == current.version,
                    )
                    .values(version=runs_table.c.version + 1, **values)
                )
                if result.rowcount != 1:
                    continue
                self._event(
                    conn,
                    run_id,
                    "kill_requested" if kill else "cancel_requested",
                    reason=f"kill requested by {actor or self.actor}"
                    if kill
                    else f"cancel requested by {actor or self.actor} (grace {grace_s:g}s)",
                    actor=actor,
                )
            return self.get_run(run_id)
        raise UpdateConflictError(
            f"run {run_id} kept changing under us; gave up after {MAX_RACE_RETRIES} retries"
        )

    def retry_run(self, run_id: int, *, actor: str | None = None) -> RunRecord:
        """A finished run goes back to the queue as a new attempt."""
        current = self.get_run(run_id)
        if not current.status.is_final:
            raise IllegalTransitionError(
                f"run {run_id} is {current.status}; only finished runs can be retried"
            )
        return self._requeue(
            run_id,
            reason="retried by user",
            expect=FINAL_STATUSES,
            actor=actor,
            attempt=current.attempt + 1,
            not_before=None,
            started_at=None,
            finished_at=None,
            exit_code=None,
            signal=None,
            activity_at=None,
        )
