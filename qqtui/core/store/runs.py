"""Runs as a whole: listing and counting them, adding one to the queue, releasing or
discarding a held one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, update

from qqtui.core.leases import LeaseSet
from qqtui.core.models import events_table, runs_table
from qqtui.core.records import IllegalTransitionError, QqError, RunRecord, Status, Worktree
from qqtui.core.runspec import DEFAULT_HUNG_AFTER_S, RunSpec
from qqtui.core.store.base import StoreBase


class RunsMixin(StoreBase):
    """Reads of the run list, and the runs' creation (and undoing a held one)."""

    def list_runs(
        self,
        statuses: Iterable[Status] | None = None,
        *,
        session_id: str | None = None,
        worker_id: str | None = None,
        host: str | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if statuses is not None:
            wanted = sorted({str(s) for s in statuses})
            if not wanted:
                return []
            params.update({f"status_{i}": s for i, s in enumerate(wanted)})
            clauses.append(f"status IN ({', '.join(f':status_{i}' for i in range(len(wanted)))})")
        for column, value in (("session_id", session_id), ("worker_id", worker_id), ("host", host)):
            if value is not None:
                clauses.append(f"{column} = :{column}")
                params[column] = value
        where = " AND ".join(clauses) or "1 = 1"
        if limit is not None:
            where += " ORDER BY id DESC LIMIT :limit"
            params["limit"] = limit
        else:
            where += " ORDER BY id"
        with self._read() as conn:
            runs = self._select_runs(conn, where, params)
        if limit is not None:
            runs.reverse()
        return runs

    def count_by_status(self) -> dict[Status, int]:
        with self._read() as conn:
            rows = conn.execute(
                select(runs_table.c.status, func.count()).group_by(runs_table.c.status)
            ).all()
        return {Status(s): n for s, n in rows}

    def last_run_in_session(self, session_id: str) -> RunRecord | None:
        runs = self.list_runs(session_id=session_id, limit=1)
        return runs[0] if runs else None

    def add_run(
        self,
        spec: RunSpec,
        *,
        session_id: str,
        actor: str | None = None,
        leases: LeaseSet | None = None,
        worktree: Worktree | None = None,
        hold_reason: str | None = None,
        hold_s: float = 0.0,
    ) -> RunRecord:
        """Insert a queued run of `spec` (its cwd resolved) and its creation event in one
        transaction. `submit_run` (intents.py) resolves and validates the spec first.

        `worktree`: the run works in that existing worktree (resume). With
        `hold_reason` the run is not claimable for `hold_s` seconds (or until
        `release_run`): the caller still prepares something the run needs (its
        worktree). If the caller dies meanwhile the hold lapses and the run fails at
        spawn with a clear reason instead of waiting forever.
        """
        argv = spec.argv
        if not argv:
            raise QqError("empty command: give the command after --")
        leases = leases or LeaseSet()
        now = self.clock()
        with self._write() as conn:
            row = (
                conn.execute(
                    runs_table.insert()
                    .values(
                        name=spec.name,
                        agent=spec.agent,
                        argv=list(argv),
                        cwd=spec.cwd,
                        env=dict(spec.env),
                        session_id=session_id,
                        status=str(Status.QUEUED),
                        attempt=1,
                        max_retries=spec.retries,
                        retry_on_lost=spec.retry_on_lost,
                        timeout_s=spec.timeout_s,
                        hung_after_s=(
                            DEFAULT_HUNG_AFTER_S if spec.hung_after_s is None else spec.hung_after_s
                        ),
                        created_at=now,
                        version=1,
                        hung=False,
                        cancel_requested=False,
                        kill_requested=False,
                        output_bytes=0,
                        workspace=leases.workspace,
                        locks=sorted(leases.locks),
                        paths=list(leases.paths),
                        leased=not leases.empty,
                        worktree=worktree.path if worktree else None,
                        worktree_repo=worktree.repo if worktree else None,
                        worktree_branch=worktree.branch if worktree else None,
                        keep_worktree=spec.keep_worktree,
                        tty=bool(spec.tty),
                        tty_cols=spec.tty_size[0] if spec.tty and spec.tty_size else None,
                        tty_rows=spec.tty_size[1] if spec.tty and spec.tty_size else None,
                        waiting=False,
                        not_before=now + hold_s if hold_reason else None,
                        reason=hold_reason,
                    )
                    .returning(runs_table)
                )
                .mappings()
                .one()
            )
            self._event(
                conn,
                row["id"],
                "transition",
                to_status="queued",
                reason="added",
                actor=actor,
                at=now,
            )
        return RunRecord.from_row(row)

    def release_run(
        self,
        run_id: int,
        *,
        cwd: str | None = None,
        leases: LeaseSet | None = None,
        worktree: str | None = None,
        worktree_repo: str | None = None,
        worktree_branch: str | None = None,
    ) -> RunRecord:
        """Make a held run (see `add_run`) claimable now, with what its preparation
        settled (its worktree as cwd, and the leases relative to that)."""
        values: dict[str, Any] = {"not_before": None, "reason": None}
        if cwd is not None:
            values["cwd"] = cwd
        if leases is not None:
            values.update(
                workspace=leases.workspace,
                locks=sorted(leases.locks),
                paths=list(leases.paths),
                leased=not leases.empty,
            )
        if worktree is not None:
            values.update(
                worktree=worktree, worktree_repo=worktree_repo, worktree_branch=worktree_branch
            )
        with self._write() as conn:
            row = (
                conn.execute(
                    update(runs_table)
                    .where(runs_table.c.id == run_id, runs_table.c.status == str(Status.QUEUED))
                    .values(**values)
                    .returning(runs_table)
                )
                .mappings()
                .first()
            )
        if row is None:
            raise IllegalTransitionError(f"run {run_id} is no longer queued; cannot release it")
        return RunRecord.from_row(row)

    def discard_run(self, run_id: int) -> None:
        """Delete a held run that never became claimable, with its events: its
        preparation failed, and nothing about it should remain."""
        with self._write() as conn:
            gone = conn.execute(
                runs_table.delete().where(
                    runs_table.c.id == run_id,
                    runs_table.c.status == str(Status.QUEUED),
                    runs_table.c.started_at.is_(None),
                )
            ).rowcount
            if gone:
                conn.execute(events_table.delete().where(events_table.c.run_id == run_id))
