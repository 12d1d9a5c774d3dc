"""The job store: engine setup, atomic claim, every state transition with its event.

Every change of a run's status commits together with its event row. Writers use
conditional UPDATEs (expected status and version, and the claim token for the
owner's writes), so a stale owner's late write changes nothing and a lost race
is retried a bounded number of times before it is raised.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    exists,
    func,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlmodel import SQLModel

from qqtui.core.clock import ServerClock
from qqtui.core.dialects import (
    RUN_COLUMNS,
    ClaimSQL,
    HeldConnection,
    StoreError,
    claim_event_reason,
    claim_sql,
    driver_cursor,
    driver_sql,
    forget_engine,
    is_postgres,
    lock_lease_claims,
    lock_schema,
    make_engine,
    normalize_db_url,
    server_epoch,
)
from qqtui.core.leases import WAIT_PREFIX, LeaseSet, admit
from qqtui.core.models import (
    RETIRED_RUN_INDEXES,
    SCHEMA_VERSION,
    events_table,
    meta_table,
    run_outputs_table,
    runs_table,
    workers_table,
)
from qqtui.core.records import (
    FINAL_STATUSES,
    EventRecord,
    IllegalTransitionError,
    NotFoundError,
    OutputTail,
    QqError,
    RunRecord,
    StaleClaimError,
    Status,
    UpdateConflictError,
    WorkerRecord,
    transition_allowed,
)

__all__ = ["MAX_RACE_RETRIES", "OUTPUT_TAIL_BYTES", "Store", "StoreError", "make_engine"]

MAX_RACE_RETRIES = 3
# How far down the due queue one claim looks for runs whose leases are free: a run
# further back waits until the runs ahead of it start or end. Each candidate's leases
# are read and decoded on every claim, so this bounds a claim's cost (1,000 made a
# leased claim take ~28 ms).
LEASE_SCAN_LIMIT = 200
OUTPUT_TAIL_BYTES = 64 * 1024  # what a TUI on another host can show of a remote run

# Fields reset when an attempt ends and the run goes back to the queue.
_ATTEMPT_FIELDS_RESET: dict[str, Any] = {
    "pid": None,
    "pid_create_time": None,
    "pgid": None,
    "shim_pid": None,
    "shim_create_time": None,
    "worker_id": None,
    "claim_token": None,
    "heartbeat_at": None,
    "hung": False,
    "cancel_requested": False,
    "kill_requested": False,
    "cancel_grace_s": None,
    "stop_cause": None,
}


_SELECT_RUNS = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
_INSERT_EVENT = (
    "INSERT INTO events (run_id, at, kind, from_status, to_status, reason, actor, host)"
    " VALUES (:run_id, :at, :kind, :from_status, :to_status, :reason, :actor, :host)"
)
_SCALAR_COLUMNS = frozenset(RUN_COLUMNS) - {"argv", "env", "locks", "paths"}


def _assignments(values: dict[str, Any]) -> str:
    """`col = :set_col, ...` for a driver-level UPDATE of scalar run columns (the
    names come from this module, never from input; JSON columns go through Core)."""
    unknown = set(values) - _SCALAR_COLUMNS
    if unknown:
        raise ValueError(f"not a scalar run column: {sorted(unknown)}")
    return ", ".join(f"{name} = :set_{name}" for name in values)


def _set_params(values: dict[str, Any]) -> dict[str, Any]:
    return {f"set_{name}": value for name, value in values.items()}


# --- engine setup lives in dialects.py, the one place that knows about dialects --------


# --- the store ----------------------------------------------------------------------------


def _now() -> float:
    return time.time()


def refuse_foreign_sqlite(url: str) -> None:
    """Raise StoreError for a SQLite file of another program (tables, but no runs table).

    Checked read-only before the engine opens it: the engine's first connection turns on
    WAL, which rewrites the file's header, and a qqtui schema must not be added to it."""
    import sqlite3

    from qqtui.config import sqlite_path

    path = sqlite_path(url)
    if path is None or not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError:
        return  # unreadable or corrupt: the engine's own open reports it
    if names and "runs" not in names:
        raise StoreError(
            f"cannot use database {path}: the file is not a qqtui database "
            "(it has tables, but no runs table)"
        )


class Store:
    """Owns every read and write of the job table."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] | None = None,
        host: str | None = None,
        actor: str = "cli",
    ) -> None:
        self.engine = engine
        # On a shared server every time comparison must use the server's clock (see
        # clock.py); on SQLite there is one host, and its clock is the clock.
        self.server_clock: ServerClock | None = None
        if clock is None and is_postgres(engine):
            self.server_clock = ServerClock(lambda: server_epoch(engine))
            clock = self.server_clock
        self.clock: Callable[[], float] = clock or _now
        self.host = host or os.uname().nodename
        self.actor = actor
        # Test seam: called between an optimistic read and its conditional write, so a
        # test can commit a real competing write in that window.
        self._between_read_and_write: Callable[[int], None] | None = None
        self._claims = HeldConnection(engine)

    # -- lifecycle

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> Store:
        """Open (and create or check the schema of) the store at `url`."""
        url = normalize_db_url(url)
        refuse_foreign_sqlite(url)
        store = cls(make_engine(url), **kwargs)
        store.init_schema()
        return store

    @property
    def shared(self) -> bool:
        """Whether workers on other hosts may use this store (PostgreSQL)."""
        return is_postgres(self.engine)

    @property
    def clock_skew_s(self) -> float | None:
        """This host's wall clock minus the server's (None: the store uses this clock)."""
        return self.server_clock.skew_s if self.server_clock is not None else None

    def init_schema(self) -> None:
        """Create the tables on first use, migrate an older schema, refuse a newer one."""
        try:
            with self.engine.begin() as conn:
                lock_schema(conn)
                found = None
                if inspect(conn).has_table(meta_table.name):
                    found = conn.execute(
                        select(meta_table.c.value).where(meta_table.c.key == "schema_version")
                    ).scalar_one_or_none()
                migrated = found
                if found == "1":
                    _migrate_1_to_2(conn)
                    found = "2"
                if found == "2":
                    _migrate_2_to_3(conn)
                    found = "3"
                if found != migrated:
                    conn.execute(
                        update(meta_table)
                        .where(meta_table.c.key == "schema_version")
                        .values(value=found)
                    )
                if found is not None and found != str(SCHEMA_VERSION):
                    raise StoreError(
                        f"database schema version {found} does not match this qqtui "
                        f"({SCHEMA_VERSION}); upgrade qqtui or use another database"
                    )
                SQLModel.metadata.create_all(conn)
                # create_all adds no index to a table that already exists: indexes that
                # arrived after a database was made are created here (idempotent).
                for index in runs_table.indexes:
                    index.create(conn, checkfirst=True)
                for name in RETIRED_RUN_INDEXES:
                    conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
                if found is None:
                    conn.execute(
                        meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION))
                    )
            if self.server_clock is not None:
                self.server_clock.measure()
        except DatabaseError as exc:
            raise StoreError(f"cannot use database {_safe_url(self)}: {_db_error(exc)}") from exc

    def close(self) -> None:
        self._claims.close()
        forget_engine(self.engine)

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as raw:
            conn = raw.execution_options(qq_read=True)
            with conn.begin():
                yield conn

    # -- events

    def _event(
        self,
        conn: Connection,
        run_id: int,
        kind: str,
        *,
        from_status: str | None = None,
        to_status: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
        at: float | None = None,
    ) -> None:
        self._execute(
            conn,
            _INSERT_EVENT,
            {
                "run_id": run_id,
                "at": at if at is not None else self.clock(),
                "kind": kind,
                "from_status": from_status,
                "to_status": to_status,
                "reason": reason,
                "actor": actor or self.actor,
                "host": self.host,
            },
        )

    def add_event(self, run_id: int, kind: str, reason: str, actor: str | None = None) -> None:
        """Append a non-transition event (hung, output truncated, adopted, ...)."""
        with self._write() as conn:
            self._event(conn, run_id, kind, reason=reason, actor=actor)

    def events(self, run_id: int) -> list[EventRecord]:
        with self._read() as conn:
            rows = conn.execute(
                select(events_table)
                .where(events_table.c.run_id == run_id)
                .order_by(events_table.c.id)
            ).mappings()
            return [EventRecord.from_row(r) for r in rows]

    # -- reads

    def get_run(self, run_id: int) -> RunRecord:
        with self._read() as conn:
            return self._get(conn, run_id)

    def _get(self, conn: Connection, run_id: int) -> RunRecord:
        runs = self._select_runs(conn, "id = :id", {"id": run_id})
        if not runs:
            raise NotFoundError(f"no run with id {run_id}")
        return runs[0]

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

    # -- driver-level statements (see dialects.driver_cursor for why)

    def _execute(self, conn: Connection, sql: str, params: dict[str, Any]) -> int:
        """Run one statement written with `:name` parameters; returns its row count."""
        with driver_cursor(conn) as cur:
            cur.execute(driver_sql(conn.dialect.name, sql), params)
            return int(cur.rowcount)

    def _select_runs(
        self, conn: Connection, where: str, params: dict[str, Any], *, sql: str | None = None
    ) -> list[RunRecord]:
        """Records of `SELECT <every run column> FROM runs WHERE <where>` (or of `sql`,
        an UPDATE ... RETURNING the same columns)."""
        with driver_cursor(conn) as cur:
            cur.execute(
                driver_sql(conn.dialect.name, sql or f"{_SELECT_RUNS} WHERE {where}"), params
            )
            return [
                RunRecord.from_row(dict(zip(RUN_COLUMNS, r, strict=True))) for r in cur.fetchall()
            ]

    def count_by_status(self) -> dict[Status, int]:
        with self._read() as conn:
            rows = conn.execute(
                select(runs_table.c.status, func.count()).group_by(runs_table.c.status)
            ).all()
        return {Status(s): n for s, n in rows}

    def last_run_in_session(self, session_id: str) -> RunRecord | None:
        runs = self.list_runs(session_id=session_id, limit=1)
        return runs[0] if runs else None

    # -- creating runs

    def add_run(
        self,
        *,
        argv: Sequence[str],
        cwd: str,
        session_id: str,
        name: str = "",
        agent: str = "default",
        env: dict[str, str] | None = None,
        timeout_s: float | None = None,
        hung_after_s: float = 300.0,
        max_retries: int = 0,
        retry_on_lost: bool = False,
        actor: str | None = None,
        leases: LeaseSet | None = None,
        worktree: str | None = None,
        worktree_repo: str | None = None,
        worktree_branch: str | None = None,
        keep_worktree: bool = False,
        hold_reason: str | None = None,
        hold_s: float = 0.0,
    ) -> RunRecord:
        """Insert a queued run and its creation event in one transaction.

        With `hold_reason` the run is not claimable for `hold_s` seconds (or until
        `release_run`): the caller still prepares something the run needs (its
        worktree). If the caller dies meanwhile the hold lapses and the run fails at
        spawn with a clear reason instead of waiting forever.
        """
        if not argv:
            raise QqError("empty command: give the command after --")
        leases = leases or LeaseSet()
        now = self.clock()
        with self._write() as conn:
            row = (
                conn.execute(
                    runs_table.insert()
                    .values(
                        name=name,
                        agent=agent,
                        argv=list(argv),
                        cwd=cwd,
                        env=dict(env or {}),
                        session_id=session_id,
                        status=str(Status.QUEUED),
                        attempt=1,
                        max_retries=max_retries,
                        retry_on_lost=retry_on_lost,
                        timeout_s=timeout_s,
                        hung_after_s=hung_after_s,
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
                        worktree=worktree,
                        worktree_repo=worktree_repo,
                        worktree_branch=worktree_branch,
                        keep_worktree=keep_worktree,
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

    # -- the claim

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
        rows = [dict(zip(RUN_COLUMNS, r[1:], strict=True)) for r in result if r[1] is not None]
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
            rows = [dict(zip(RUN_COLUMNS, r, strict=True)) for r in cur.fetchall()]
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
                    f"{fenced} RETURNING {', '.join(RUN_COLUMNS)}",
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
            "hung": False,
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
        values = dict(_ATTEMPT_FIELDS_RESET)
        values.update(
            attempt=current.attempt + 1,
            not_before=not_before,
            finished_at=None,
            exit_code=exit_code,
            signal=signal,
        )
        return self._transition(
            run_id,
            Status.QUEUED,
            reason=reason,
            values=values,
            token=token,
            actor=actor,
            expect=frozenset({Status.RUNNING}),
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
        values = dict(_ATTEMPT_FIELDS_RESET)
        values.update(
            not_before=None,
            started_at=None,
            finished_at=None,
            activity_at=None,
            exit_code=None,
            signal=None,
        )
        return self._transition(
            run_id,
            Status.QUEUED,
            reason=reason,
            values=values,
            token=token,
            actor=actor,
            expect=frozenset({Status.RUNNING}),
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

    # -- user intents

    def request_cancel(
        self, run_id: int, *, grace_s: float = 10.0, actor: str | None = None
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
        values = dict(_ATTEMPT_FIELDS_RESET)
        values.update(
            attempt=current.attempt + 1,
            not_before=None,
            started_at=None,
            finished_at=None,
            exit_code=None,
            signal=None,
            activity_at=None,
        )
        return self._transition(
            run_id,
            Status.QUEUED,
            reason="retried by user",
            values=values,
            actor=actor,
            expect=FINAL_STATUSES,
        )

    # -- workers

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
        values: dict[str, Any] = {"finished_at": now, "hung": False, "reason": lost_reason}
        if requeue:
            values = dict(_ATTEMPT_FIELDS_RESET)
            values.update(
                attempt=run.attempt + 1,
                not_before=None,
                finished_at=None,
                exit_code=None,
                signal=None,
                reason=f"{lost_reason}; retry {run.attempt} of {run.max_retries}",
            )
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
            self._event(
                conn,
                run.id,
                "transition",
                from_status=str(Status.RUNNING),
                to_status=str(Status.LOST),
                reason=lost_reason,
                actor=rescuer,
                at=now,
            )
            if requeue:
                self._event(
                    conn,
                    run.id,
                    "transition",
                    from_status=str(Status.LOST),
                    to_status=str(Status.QUEUED),
                    reason=f"requeued: the run allows retry on loss "
                    f"(retry {run.attempt} of {run.max_retries})",
                    actor=rescuer,
                    at=now,
                )
        return RunRecord.from_row(updated)

    # -- output tails of remote runs

    def record_output_tail(
        self,
        run_id: int,
        token: str,
        *,
        attempt: int,
        log_path: str,
        size: int,
        tail: bytes,
    ) -> bool:
        """Keep the last OUTPUT_TAIL_BYTES of a run's output for TUIs on other hosts;
        fenced by the claim token like every owner write."""
        tail = tail[-OUTPUT_TAIL_BYTES:]
        values = {
            "attempt": attempt,
            "host": self.host,
            "log_path": log_path,
            "size": size,
            "tail": tail,
            "updated_at": self.clock(),
        }
        with self._write() as conn:
            owned = conn.execute(
                select(runs_table.c.id).where(
                    runs_table.c.id == run_id, runs_table.c.claim_token == token
                )
            ).first()
            if owned is None:
                return False
            result = conn.execute(
                update(run_outputs_table)
                .where(run_outputs_table.c.run_id == run_id)
                .values(**values)
            )
            if result.rowcount == 0:
                # Only the run's owner writes its row, so the insert cannot race.
                conn.execute(run_outputs_table.insert().values(run_id=run_id, **values))
        return True

    def output_tail(self, run_id: int) -> OutputTail | None:
        """The stored output tail of a run (None if its worker never stored one)."""
        with self._read() as conn:
            row = (
                conn.execute(select(run_outputs_table).where(run_outputs_table.c.run_id == run_id))
                .mappings()
                .first()
            )
        return OutputTail.from_row(row) if row is not None else None

    def prune_output_tails(self, keep_s: float) -> int:
        """Drop the stored output tails of runs that ended more than `keep_s` ago (or
        are gone); returns how many. A finished remote run's tail stays viewable for
        a while; then it is 64 KiB per run that nobody will read."""
        finals = ", ".join(f"'{s}'" for s in sorted(str(s) for s in FINAL_STATUSES))
        with self._write() as conn:
            return self._execute(
                conn,
                "DELETE FROM run_outputs WHERE run_id IN (SELECT id FROM runs WHERE"
                f" status IN ({finals}) AND finished_at < :cutoff)"
                " OR run_id NOT IN (SELECT id FROM runs)",
                {"cutoff": self.clock() - keep_s},
            )

    def server_time(self) -> float:
        """Now, by the clock this store decides by (the server's on PostgreSQL)."""
        return self.clock()


def _migrate_1_to_2(conn: Connection) -> None:
    false = "false" if is_postgres(conn) else "0"
    conn.execute(
        text(f"ALTER TABLE runs ADD COLUMN retry_on_lost BOOLEAN NOT NULL DEFAULT {false}")
    )
    conn.execute(text("ALTER TABLE workers ADD COLUMN clock_skew_s FLOAT"))


def _migrate_2_to_3(conn: Connection) -> None:
    false = "false" if is_postgres(conn) else "0"
    for column, sql_type in (
        ("workspace", "TEXT"),
        ("locks", "JSON"),
        ("paths", "JSON"),
        ("leased", f"BOOLEAN NOT NULL DEFAULT {false}"),
        ("worktree", "TEXT"),
        ("worktree_repo", "TEXT"),
        ("worktree_branch", "VARCHAR"),
        ("keep_worktree", f"BOOLEAN NOT NULL DEFAULT {false}"),
    ):
        conn.execute(text(f"ALTER TABLE runs ADD COLUMN {column} {sql_type}"))


def _safe_url(store: Store) -> str:
    """The URL without its password, for error messages."""
    return store.engine.url.render_as_string(hide_password=True)


def _db_error(exc: DatabaseError) -> str:
    text = str(exc.orig) if getattr(exc, "orig", None) is not None else str(exc)
    if isinstance(exc, OperationalError) and "locked" in text:
        return "the database is locked by another process"
    if "not a database" in text or "malformed" in text:
        return "the file is not a qqtui database or is corrupt"
    return text.splitlines()[0]
