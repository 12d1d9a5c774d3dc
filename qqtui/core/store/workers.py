"""Workers and their hosts: registration and heartbeats, and the rescue of the runs of
workers that stopped heartbeating.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, func, select, update

from qqtui.core.models import runs_table, workers_table
from qqtui.core.records import NotFoundError, RunRecord, Status, WorkerRecord
from qqtui.core.store.base import StoreBase
from qqtui.core.store.transitions import ATTEMPT_FIELDS_RESET, WAITING_RESET


class WorkersMixin(StoreBase):
    """The workers table, and ending the runs of dead workers on any host."""

    def register_worker(
        self, *, worker_id: str, pid: int, pid_create_time: float, boot_id: str
    ) -> WorkerRecord:
        now = self.clock()
        with self._write() as conn:
            conn.execute(
                workers_table.insert().values(
                    id=worker_id,
                    host=self.host,
                    pid=pid,
                    pid_create_time=pid_create_time,
                    boot_id=boot_id,
                    started_at=now,
                    heartbeat_at=now,
                    clock_skew_s=self.clock_skew_s,
                )
            )
        return self.get_worker(worker_id)

    def heartbeat_worker(self, worker_id: str) -> None:
        """Say this worker is alive (and how far its clock is off the server's)."""
        with self._write() as conn:
            conn.execute(
                update(workers_table)
                .where(workers_table.c.id == worker_id)
                .values(heartbeat_at=self.clock(), clock_skew_s=self.clock_skew_s)
            )

    def stop_worker(self, worker_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                update(workers_table)
                .where(workers_table.c.id == worker_id)
                .values(stopped_at=self.clock())
            )

    def get_worker(self, worker_id: str) -> WorkerRecord:
        with self._read() as conn:
            row = (
                conn.execute(select(workers_table).where(workers_table.c.id == worker_id))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError(f"no worker {worker_id}")
        return WorkerRecord.from_row(row)

    def workers(self, *, host: str | None = None, live_only: bool = False) -> list[WorkerRecord]:
        query = select(workers_table).order_by(workers_table.c.started_at)
        if host is not None:
            query = query.where(workers_table.c.host == host)
        if live_only:
            query = query.where(workers_table.c.stopped_at.is_(None))
        with self._read() as conn:
            return [WorkerRecord.from_row(r) for r in conn.execute(query).mappings()]

    # -- rescue: runs of workers that stopped heartbeating, on any host

    def rescue_dead_workers(
        self, horizon_s: float, *, rescuer: str, skip_host: str | None = None
    ) -> list[RunRecord]:
        """Declare dead every worker whose heartbeat is older than `horizon_s` (server
        time) and end its running runs as `lost`; a run that allows retry on loss goes
        back to the queue as its next attempt, if it has retries left.

        Nothing is signalled: the runs' processes belong to another host, which alone
        may touch them. Runs on `skip_host` are left to that host's own recovery, which
        can check whether their processes still live. A run whose worker heartbeats is
        never touched, however long it runs: the UPDATE re-checks the heartbeat.
        """
        now = self.clock()
        cutoff = now - horizon_s
        alive = workers_table.alias("alive")
        fresh_worker = (
            exists()
            .where(alive.c.id == runs_table.c.worker_id, alive.c.heartbeat_at >= cutoff)
            .correlate(runs_table)
        )
        stale = and_(
            runs_table.c.status == str(Status.RUNNING),
            ~fresh_worker,
            func.coalesce(runs_table.c.heartbeat_at, runs_table.c.started_at, 0.0) < cutoff,
        )
        query = (
            select(runs_table, workers_table.c.heartbeat_at.label("worker_heartbeat_at"))
            .outerjoin(workers_table, workers_table.c.id == runs_table.c.worker_id)
            .where(stale)
            .order_by(runs_table.c.id)
        )
        if skip_host is not None:
            query = query.where(runs_table.c.host != skip_host)
        with self._read() as conn:
            candidates = list(conn.execute(query).mappings())
        rescued: list[RunRecord] = []
        for row in candidates:
            record = self._rescue_one(row, now, horizon_s, stale, rescuer)
            if record is not None:
                rescued.append(record)
        return rescued

    def _rescue_one(
        self, row: Any, now: float, horizon_s: float, stale: Any, rescuer: str
    ) -> RunRecord | None:
        run = RunRecord.from_row(row)
        last = row["worker_heartbeat_at"] or run.heartbeat_at or run.started_at or 0.0
        lost_reason = (
            f"lost: worker {run.worker_id} on host {run.host} stopped heartbeating "
            f"{now - last:.0f}s ago (rescue horizon {horizon_s:g}s); rescued from {self.host}"
        )
        requeue = run.retry_on_lost and run.attempt <= run.max_retries
        values: dict[str, Any] = {"finished_at": now, **WAITING_RESET, "reason": lost_reason}
        if requeue:
            values = {
                **ATTEMPT_FIELDS_RESET,
                "attempt": run.attempt + 1,
                "not_before": None,
                "finished_at": None,
                "exit_code": None,
                "signal": None,
                "reason": f"{lost_reason}; retry {run.attempt} of {run.max_retries}",
            }
        with self._write() as conn:
            # Same token and still stale: a heartbeat or an adoption since our read wins.
            updated = (
                conn.execute(
                    update(runs_table)
                    .where(
                        runs_table.c.id == run.id,
                        runs_table.c.version == run.version,
                        stale,
                    )
                    .values(
                        status=str(Status.QUEUED if requeue else Status.LOST),
                        version=runs_table.c.version + 1,
                        **values,
                    )
                    .returning(runs_table)
                )
                .mappings()
                .first()
            )
            if updated is None:
                return None
            steps = [(Status.RUNNING, Status.LOST, lost_reason)]
            if requeue:
                steps.append(
                    (
                        Status.LOST,
                        Status.QUEUED,
                        "requeued: the run allows retry on loss "
                        f"(retry {run.attempt} of {run.max_retries})",
                    )
                )
            for old, new, reason in steps:
                self._event(
                    conn,
                    run.id,
                    "transition",
                    from_status=str(old),
                    to_status=str(new),
                    reason=reason,
                    actor=rescuer,
                    at=now,
                )
        return RunRecord.from_row(updated)
