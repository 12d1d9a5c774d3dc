"""Everything that differs between SQLite and PostgreSQL, in one place.

The store speaks portable SQLAlchemy Core; what cannot be portable lives here:
URL handling, engine and pool setup, the claim statement (SQLite serialises writers
with BEGIN IMMEDIATE; PostgreSQL lets claimers skip each other's locked rows), the
server clock, and the lock that serialises schema creation.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Update, create_engine, event, or_, select, text, update

from qqtui.config import sqlite_path
from qqtui.core.models import runs_table
from qqtui.core.records import QqError, Status

SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_POOL_SIZE = 4  # a worker's loop is one thread; the TUI adds a few readers
PG_POOL_OVERFLOW = 8
PG_CONNECT_TIMEOUT_S = 5  # a dead server must not hang a CLI command for minutes
# Any constant both sides agree on: serialises concurrent first-time schema creation.
PG_SCHEMA_LOCK_KEY = 0x71717475  # "qqtu"
# Serialises claims of runs with leases (see store.claim_runs) across every worker.
PG_LEASE_LOCK_KEY = 0x71716C65  # "qqle"


class StoreError(QqError):
    pass


def normalize_db_url(url: str) -> str:
    """Users write `postgresql://` or `postgres://`; SQLAlchemy needs the driver named."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith(("postgresql+", "postgres+")):
        raise StoreError(f"unsupported PostgreSQL driver in {url!r}: qqtui uses psycopg 3")
    return url


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql", "postgres"))


def make_engine(url: str) -> Engine:
    """An engine for `url` (SQLite file or PostgreSQL server)."""
    url = normalize_db_url(url)
    if url.startswith("postgresql+psycopg://"):
        return _make_pg_engine(url)
    if not url.startswith("sqlite"):
        raise StoreError(
            f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://HOST/DB"
        )
    return _make_sqlite_engine(url)


# --- SQLite ------------------------------------------------------------------------------


def _prepare_sqlite_file(path: Path) -> None:
    """Create the database file 0600 ourselves, so SQLite (which copies the main file's
    mode onto -wal and -shm) never makes a world-readable one."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open database {path}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _make_sqlite_engine(url: str) -> Engine:
    """SQLite gets WAL, a busy timeout, synchronous=NORMAL and BEGIN IMMEDIATE for
    every write transaction."""
    path = sqlite_path(url)
    if path is not None:
        if not path.parent.is_dir():
            raise StoreError(f"cannot open database {path}: {path.parent} is not a directory")
        _prepare_sqlite_file(path)
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's implicit BEGIN is
        # DEFERRED, which turns read-then-write races into SQLITE_BUSY deadlocks).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "DEFERRED" if conn.get_execution_options().get("qq_read") else "IMMEDIATE"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


# --- PostgreSQL --------------------------------------------------------------------------

# One engine (one pool) per URL per process: the TUI, the snapshot fallback and the
# CLI may each open "a store", and each must not cost a new set of connections.
_PG_ENGINES: dict[str, Engine] = {}


def _make_pg_engine(url: str) -> Engine:
    engine = _PG_ENGINES.get(url)
    if engine is not None:
        return engine
    engine = create_engine(
        url,
        pool_size=PG_POOL_SIZE,
        max_overflow=PG_POOL_OVERFLOW,
        # A server restart leaves every pooled connection dead; the ping replaces a dead
        # one at checkout instead of failing the caller's first statement.
        pool_pre_ping=True,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S, "application_name": "qqtui"},
    )
    _PG_ENGINES[url] = engine
    return engine


def forget_engine(engine: Engine) -> None:
    """Close a PostgreSQL engine's pooled connections and stop handing it out."""
    for url, cached in list(_PG_ENGINES.items()):
        if cached is engine:
            del _PG_ENGINES[url]
    engine.dispose()


def is_postgres(conn_or_engine: Connection | Engine) -> bool:
    return conn_or_engine.dialect.name == "postgresql"


def lock_schema(conn: Connection) -> None:
    """Serialise schema creation: two first-time workers racing CREATE TABLE would
    otherwise both try to create the same types and tables."""
    if is_postgres(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_SCHEMA_LOCK_KEY})


def lock_lease_claims(conn: Connection) -> None:
    """Serialise claims that compare leases, until this transaction ends.

    SQLite needs nothing: every write transaction is BEGIN IMMEDIATE, one at a time.
    PostgreSQL: without this, two workers could each see the other's candidate as
    not yet running and start two conflicting runs. Claims of runs without leases
    never take it, so they stay as concurrent as before.
    """
    if is_postgres(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LEASE_LOCK_KEY})


def server_epoch(engine: Engine) -> float:
    """The PostgreSQL server's wall clock now, as a Unix timestamp."""
    with engine.connect() as conn:
        # clock_timestamp(), not now(): now() is frozen at the start of a transaction.
        return float(
            conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one()
        )


def claim_statement(
    dialect_name: str,
    limit: int,
    now: float,
    values: dict[str, Any],
    *,
    unleased_only: bool = False,
) -> Update:
    """UPDATE ... RETURNING that moves up to `limit` due queued runs to running.

    `unleased_only` leaves runs with leases to the lease-aware claim in the store.

    SQLite: the surrounding BEGIN IMMEDIATE already serialises writers, so a plain
    `id IN (subquery)` is exactly once.

    PostgreSQL: the due rows are picked and row-locked in a CTE with
    FOR UPDATE SKIP LOCKED, so concurrent claimers never wait on or take each other's
    rows. The UPDATE joins on the CTE (UPDATE ... FROM due WHERE runs.id = due.id)
    rather than `id IN (SELECT ... LIMIT n)`, which the planner may evaluate more than
    once and so update more rows than the LIMIT; and it re-checks the status in case a
    row changed between our snapshot and its lock.
    """
    due_filter = [
        runs_table.c.status == str(Status.QUEUED),
        or_(runs_table.c.not_before.is_(None), runs_table.c.not_before <= now),
    ]
    if unleased_only:
        due_filter.append(runs_table.c.leased.is_(False))
    if dialect_name == "postgresql":
        due = (
            select(runs_table.c.id)
            .where(*due_filter)
            .order_by(runs_table.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("due")
        )
        return (
            update(runs_table)
            .where(runs_table.c.id == due.c.id, runs_table.c.status == str(Status.QUEUED))
            .values(**values)
            .returning(runs_table)
        )
    due_ids = (
        select(runs_table.c.id).where(*due_filter).order_by(runs_table.c.id).limit(limit)
    ).scalar_subquery()
    return (
        update(runs_table)
        .where(runs_table.c.id.in_(due_ids), runs_table.c.status == str(Status.QUEUED))
        .values(**values)
        .returning(runs_table)
    )
