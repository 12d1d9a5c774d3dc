"""Everything that differs between SQLite and PostgreSQL, in one place.

The store speaks portable SQLAlchemy Core; what cannot be portable lives here:
URL handling, engine and pool setup, the claim statement (SQLite serialises writers
with BEGIN IMMEDIATE; PostgreSQL lets claimers skip each other's locked rows), the
server clock, the lock that serialises schema creation, and the claim's hot path as
driver SQL.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError

from qqtui.config import sqlite_path
from qqtui.core.records import RUN_FIELDS, QqError

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
        with driver_cursor(conn) as cur:  # every transaction pays this: keep it cheap
            cur.execute(f"BEGIN {mode}")

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


# --- the claim's hot path, as driver SQL ----------------------------------------------------
#
# Claiming a run without leases is the statement every worker runs most. Through
# SQLAlchemy Core it cost ~1.4 ms of client CPU per claim (statement construction,
# cache keys, result wrapping) around ~150 µs of SQLite work; as fixed SQL on the
# pooled connection's own cursor it costs little more than the database's work. The
# text is built once per dialect from the run's declared columns (RUN_FIELDS), so it
# follows the schema.


@dataclass(frozen=True, slots=True)
class ClaimSQL:
    """The unleased claim's statements for one dialect; parameters are named.

    SQLite (`single_statement` False), in one BEGIN IMMEDIATE transaction:
    `leased_due` (a row if any due run has leases: the store then takes its
    lease-aware path), `claim` (UPDATE ... RETURNING RUN_FIELDS) and `events`
    (executemany, one row per claimed run).

    PostgreSQL (`single_statement` True): `claim` alone does all three, committed on
    its own (autocommit): its rows are (leased_due, *RUN_FIELDS), one row with NULL
    run columns when it claimed nothing. One round trip and one commit per claim,
    instead of five round trips (BEGIN, check, claim, insert, COMMIT).
    """

    claim: str
    single_statement: bool
    leased_due: str | None = None
    events: str | None = None


def claim_event_reason(worker_id: str, attempt: int) -> str:
    """The event reason of a claim; the PostgreSQL statement builds the same text."""
    return f"claimed by worker {worker_id} (attempt {attempt})"


@functools.cache
def claim_sql(dialect_name: str) -> ClaimSQL:
    """The claim's SQL for `dialect_name` (parameters: now, limit, worker, host, token,
    actor). Runs with leases are left to the lease-aware claim in the store: while any
    is due, this claims nothing and says so.

    SQLite: the surrounding BEGIN IMMEDIATE already serialises writers, so a plain
    `id IN (subquery)` is exactly once.

    PostgreSQL: the due rows are picked and row-locked in a CTE with
    FOR UPDATE SKIP LOCKED, so concurrent claimers never wait on or take each other's
    rows. The UPDATE joins on the CTE (UPDATE ... FROM due WHERE runs.id = due.id)
    rather than `id IN (SELECT ... LIMIT n)`, which the planner may evaluate more than
    once and so update more rows than the LIMIT; and it re-checks the status in case a
    row changed between our snapshot and its lock.
    """
    pg = dialect_name == "postgresql"

    def p(name: str) -> str:
        return f"%({name})s" if pg else f":{name}"

    # Literal values, not parameters: SQLite picks the (status, leased, id) index only
    # when it can see the equality terms' values at prepare time.
    true, false = ("true", "false") if pg else ("1", "0")
    due = (
        f"status = 'queued' AND leased = {{leased}}"
        f" AND (not_before IS NULL OR not_before <= {p('now')})"
    )
    assignments = (
        f"status = 'running', worker_id = {p('worker')}, host = {p('host')},"
        f" claim_token = {p('token')}, started_at = {p('now')}, finished_at = NULL,"
        f" heartbeat_at = {p('now')}, activity_at = {p('now')}, exit_code = NULL,"
        " signal = NULL, reason = NULL, version = version + 1"
    )
    columns = ", ".join(RUN_FIELDS)
    if not pg:
        return ClaimSQL(
            single_statement=False,
            leased_due=f"SELECT 1 FROM runs WHERE {due.format(leased=true)} LIMIT 1",
            # `+status`: the re-check must not steer the planner into walking the whole
            # queue through the status index instead of looking the chosen ids up.
            claim=(
                f"UPDATE runs SET {assignments} WHERE id IN (SELECT id FROM runs WHERE"
                f" {due.format(leased=false)} ORDER BY id LIMIT {p('limit')})"
                f" AND +status = 'queued' RETURNING {columns}"
            ),
            events=(
                "INSERT INTO events (run_id, at, kind, from_status, to_status, reason, actor,"
                " host) VALUES (:run_id, :now, 'transition', 'queued', 'running', :reason,"
                " :actor, :host)"
            ),
        )
    returning = ", ".join(f"runs.{c}" for c in RUN_FIELDS)
    claimed_columns = ", ".join(f"claimed.{c}" for c in RUN_FIELDS)
    return ClaimSQL(
        single_statement=True,
        claim=(
            f"WITH leased_due AS (SELECT EXISTS (SELECT 1 FROM runs WHERE"
            f" {due.format(leased=true)}) AS yes),"
            f" due AS (SELECT id FROM runs WHERE {due.format(leased=false)}"
            " AND NOT (SELECT yes FROM leased_due)"
            f" ORDER BY id LIMIT {p('limit')} FOR UPDATE SKIP LOCKED),"
            f" claimed AS (UPDATE runs SET {assignments} FROM due"
            f" WHERE runs.id = due.id AND runs.status = 'queued' RETURNING {returning}),"
            " logged AS (INSERT INTO events (run_id, at, kind, from_status, to_status, reason,"
            f" actor, host) SELECT id, {p('now')}, 'transition', 'queued', 'running',"
            f" 'claimed by worker ' || {p('worker')}::text || ' (attempt ' || attempt::text"
            f" || ')', {p('actor')}, {p('host')} FROM claimed)"
            f" SELECT leased_due.yes, {claimed_columns}"
            " FROM leased_due LEFT JOIN claimed ON true ORDER BY claimed.id"
        ),
    )


_NAMED_PARAM = re.compile(r"(?<![:\w]):(\w+)")


@functools.cache
def driver_sql(dialect_name: str, sql: str) -> str:
    """`sql`, written with `:name` parameters, in the driver's parameter style
    (psycopg: `%(name)s`; a `::type` cast is left alone)."""
    if dialect_name != "postgresql":
        return sql
    return _NAMED_PARAM.sub(r"%(\1)s", sql)


@contextlib.contextmanager
def driver_cursor(conn: Connection) -> Iterator[Any]:
    """A cursor of the driver connection under `conn`, inside `conn`'s transaction.

    For the few statements that run so often that SQLAlchemy's per-statement cost
    matters. A driver error leaves as the SQLAlchemy exception `conn.execute` would
    have raised (and a lost connection is invalidated, so the pool drops it), so
    callers handle one family of errors either way.
    """
    dbapi = conn.dialect.loaded_dbapi
    raw = conn.connection
    cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    except dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, raw, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            None, None, exc, dbapi.Error, connection_invalidated=lost, dialect=conn.dialect
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            cursor.close()


class HeldConnection:
    """One pooled connection kept out of the pool for a store's claims.

    A worker claims all day; checking a connection out (on PostgreSQL with a ping
    round trip), wrapping it in a SQLAlchemy transaction and handing it back cost more
    than the claim's own statements. SQLite: BEGIN IMMEDIATE ... COMMIT on the driver
    connection directly. PostgreSQL: the connection is in autocommit mode and the
    claim is one statement, so one round trip. Errors leave as SQLAlchemy's, like
    every other store statement's; a lost connection is dropped and the next claim
    takes a fresh one from the pool. One claim at a time (the app's threads may share
    a store).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = is_postgres(engine)
        self._raw: Any = None
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor whose statements commit together on a clean exit (PostgreSQL: each
        statement commits by itself)."""
        dialect = self.engine.dialect
        dbapi = dialect.loaded_dbapi
        with self._lock:
            if self._raw is None:
                raw = self.engine.raw_connection()
                if self.postgres:
                    driver = raw.driver_connection
                    driver.autocommit = True  # type: ignore[union-attr]
                    try:
                        # This connection runs nothing but the claim, whose best plan
                        # is always a walk of the queue index in id order. Right after
                        # a burst of adds the table statistics are stale and the planner
                        # would rather fetch and sort the whole queue on every claim
                        # (4 ms at 8,000 queued: 200 claims/s instead of 1,600).
                        driver.execute("SET enable_bitmapscan = off")  # type: ignore[union-attr]
                        driver.execute("SET enable_seqscan = off")  # type: ignore[union-attr]
                    except dbapi.Error as exc:
                        with contextlib.suppress(Exception):
                            raw.invalidate()
                        raise DBAPIError.instance(
                            None, None, exc, dbapi.Error, dialect=dialect
                        ) from exc
                self._raw = raw
            raw = self._raw
            cursor = raw.driver_connection.cursor()
            try:
                if not self.postgres:
                    cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield cursor
                    if not self.postgres:
                        cursor.execute("COMMIT")
                except BaseException:
                    if not self.postgres:
                        with contextlib.suppress(dbapi.Error):
                            cursor.execute("ROLLBACK")
                    raise
            except dbapi.Error as exc:
                lost = dialect.is_disconnect(exc, raw, cursor)
                if lost:
                    self._drop(invalidate=True)
                raise DBAPIError.instance(
                    None, None, exc, dbapi.Error, connection_invalidated=lost, dialect=dialect
                ) from exc
            finally:
                with contextlib.suppress(Exception):
                    cursor.close()

    def _drop(self, *, invalidate: bool) -> None:
        raw, self._raw = self._raw, None
        if raw is None:
            return
        with contextlib.suppress(Exception):
            if invalidate or self.postgres:
                # PostgreSQL: its session settings (autocommit, planner) are the
                # claim's own; no other user of the pool may inherit them.
                raw.invalidate()
            raw.close()  # SQLite: back to the pool

    def close(self) -> None:
        with self._lock:
            self._drop(invalidate=False)
