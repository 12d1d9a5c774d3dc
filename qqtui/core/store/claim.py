"""The claim: a worker atomically takes due queued runs, honouring their leases."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, or_, select, update

from qqtui.core.dialects import (
    ClaimSQL,
    claim_event_reason,
    claim_sql,
    is_postgres,
    lock_lease_claims,
)
from qqtui.core.leases import WAIT_PREFIX, LeaseSet, admit
from qqtui.core.models import runs_table
from qqtui.core.records import RUN_FIELDS, RunRecord, Status
from qqtui.core.store.base import StoreBase

# How far down the due queue one claim looks for runs whose leases are free: a run
# further back waits until the runs ahead of it start or end. Each candidate's leases
# are read and decoded on every claim, so this bounds a claim's cost (1,000 made a
# leased claim take ~28 ms).
LEASE_SCAN_LIMIT = 200


class ClaimMixin(StoreBase):
    """Moves due runs from queued to running for exactly one worker each."""

    def claim_runs(self, worker_id: str, limit: int = 1) -> list[RunRecord]:
        """Atomically move up to `limit` due queued runs to running for `worker_id`.

        Runs without leases: one conditional UPDATE ... RETURNING (see
        `dialects.claim_sql`). Once a due run has leases, the claim chooses in
        Python inside the same transaction, serialised with every other lease claim
        (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock), so
        the leases it compares against cannot change until it commits: two
        conflicting runs are never both running. Each attempt is claimed by exactly
        one worker, ever.
        """
        if limit <= 0:
            return []
        now = self.clock()
        token = uuid.uuid4().hex
        actor = f"worker:{worker_id}"
        params = {
            "now": now,
            "limit": limit,
            "worker": worker_id,
            "host": self.host,
            "token": token,
            "actor": actor,
        }
        sql = claim_sql(self.engine.dialect.name)
        claim_unleased = self._claim_alone if sql.single_statement else self._claim_in_transaction
        leased_due, rows = claim_unleased(sql, params)
        if leased_due:
            rows = self._claim_leased(worker_id, limit, now, token)
        return sorted((RunRecord.from_row(r) for r in rows), key=lambda r: r.id)

    def _claim_alone(self, sql: ClaimSQL, params: dict[str, Any]) -> tuple[bool, list[Any]]:
        """PostgreSQL: check, claim and log in one self-committing statement."""
        with self._claims.transaction() as cur:
            cur.execute(sql.claim, params)
            result = cur.fetchall()
        leased_due = bool(result and result[0][0])
        rows = [dict(zip(RUN_FIELDS, r[1:], strict=True)) for r in result if r[1] is not None]
        return leased_due, rows

    def _claim_in_transaction(
        self, sql: ClaimSQL, params: dict[str, Any]
    ) -> tuple[bool, list[Any]]:
        """SQLite: check, claim and log in one BEGIN IMMEDIATE transaction."""
        assert sql.leased_due is not None and sql.events is not None
        with self._claims.transaction() as cur:
            cur.execute(sql.leased_due, params)
            if cur.fetchone() is not None:
                return True, []
            cur.execute(sql.claim, params)
            rows = [dict(zip(RUN_FIELDS, r, strict=True)) for r in cur.fetchall()]
            if rows:
                cur.executemany(
                    sql.events,
                    [
                        {
                            "run_id": row["id"],
                            "now": params["now"],
                            "reason": claim_event_reason(params["worker"], row["attempt"]),
                            "actor": params["actor"],
                            "host": params["host"],
                        }
                        for row in rows
                    ],
                )
        return False, rows

    def _claim_leased(self, worker_id: str, limit: int, now: float, token: str) -> list[Any]:
        """The claim while a due run has leases: chosen in Python, under the lease lock."""
        with self._write() as conn:
            rows = self._claim_with_leases(
                conn, limit, now, self._claim_values(worker_id, token, now)
            )
            for row in rows:
                held = LeaseSet.of_row(row).describe()
                self._event(
                    conn,
                    row["id"],
                    "transition",
                    from_status="queued",
                    to_status="running",
                    reason=claim_event_reason(worker_id, row["attempt"])
                    + (f"; holds {held}" if held else ""),
                    actor=f"worker:{worker_id}",
                    at=now,
                )
        return rows

    def _claim_values(self, worker_id: str, token: str, now: float) -> dict[str, Any]:
        """What a claim sets (the lease-aware path; `dialects.claim_sql` sets the same)."""
        return {
            "status": str(Status.RUNNING),
            "worker_id": worker_id,
            "host": self.host,
            "claim_token": token,
            "started_at": now,
            "finished_at": None,
            "heartbeat_at": now,
            "activity_at": now,
            "exit_code": None,
            "signal": None,
            "reason": None,
            "version": runs_table.c.version + 1,
        }

    @staticmethod
    def _due(now: float) -> list[Any]:
        return [
            runs_table.c.status == str(Status.QUEUED),
            or_(runs_table.c.not_before.is_(None), runs_table.c.not_before <= now),
        ]

    def _claim_with_leases(
        self, conn: Connection, limit: int, now: float, values: dict[str, Any]
    ) -> list[Any]:
        """Choose due runs whose leases are free, claim them, and tell the rest why
        they wait. Runs under the lease lock, so `held` is current until commit."""
        lock_lease_claims(conn)
        lease_cols = [
            runs_table.c.id,
            runs_table.c.workspace,
            runs_table.c.locks,
            runs_table.c.paths,
        ]
        # The first LEASE_SCAN_LIMIT due runs in id order, leased or not: read as two
        # id-ordered ranges of the (status, leased, id) index and merged here, which
        # costs two short index walks instead of sorting the whole queue.
        candidates: list[Any] = []
        for leased in (False, True):
            part = (
                select(*lease_cols, runs_table.c.reason)
                .where(*self._due(now), runs_table.c.leased == leased)
                .order_by(runs_table.c.id)
                .limit(LEASE_SCAN_LIMIT)
            )
            if is_postgres(conn):
                # Rows a concurrent unleased claim is taking are skipped, never waited on.
                part = part.with_for_update(skip_locked=True)
            candidates += conn.execute(part).mappings()
        candidates = sorted(candidates, key=lambda c: c["id"])[:LEASE_SCAN_LIMIT]
        held = conn.execute(
            select(*lease_cols).where(
                runs_table.c.status == str(Status.RUNNING), runs_table.c.leased
            )
        ).mappings()
        decision = admit(
            [(c["id"], LeaseSet.of_row(c)) for c in candidates],
            [(h["id"], LeaseSet.of_row(h)) for h in held],
            limit,
        )
        # Only a changed reason is written: the queue is re-examined on every claim. A
        # run no longer blocked loses its wait reason (any other reason, say a retry's,
        # stays).
        old_reasons = {c["id"]: c["reason"] for c in candidates}
        changes: dict[int, str | None] = dict(decision.waiting)
        for run_id in decision.unblocked:
            if (old_reasons.get(run_id) or "").startswith(WAIT_PREFIX):
                changes[run_id] = None
        for run_id, reason in changes.items():
            if old_reasons.get(run_id) != reason:
                conn.execute(
                    update(runs_table)
                    .where(runs_table.c.id == run_id, runs_table.c.status == str(Status.QUEUED))
                    # A version bump, so readers that re-read only changed rows (the
                    # app's monitor) see the new wait reason.
                    .values(reason=reason, version=runs_table.c.version + 1)
                )
        if not decision.admitted:
            return []
        return list(
            conn.execute(
                update(runs_table)
                .where(
                    runs_table.c.id.in_(decision.admitted),
                    runs_table.c.status == str(Status.QUEUED),
                )
                .values(**values)
                .returning(runs_table)
            ).mappings()
        )
