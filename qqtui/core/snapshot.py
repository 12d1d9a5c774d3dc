"""Read-only snapshots of the job table without importing SQLAlchemy.

`qqtui ls` must answer in well under 300 ms on 10,000 runs, and importing
SQLAlchemy alone costs about that. For SQLite the stdlib driver reads the same
tables (`SqliteSnapshot`); any other database goes through the full store
(`StoreSnapshot`). `Snapshot(url)` picks one of the two, once.

Every way a read can fail because of the database (a server that is down or
restarting, a locked, unreadable or corrupt file) comes out as `SnapshotError`
with one line of cause, whatever the driver raised, so a live view can tell
"the database is unreachable" from a bug.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit, urlunsplit

from qqtui.config import sqlite_path
from qqtui.core.columns import require_projection
from qqtui.core.records import (
    RUN_FIELDS,
    EventRecord,
    NotFoundError,
    OutputTail,
    QqError,
    RunRecord,
    Status,
    WorkerRecord,
)

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_S = 30.0


class SnapshotError(QqError):
    """The database could not be read (unreachable, locked, unreadable or corrupt)."""


def database_error_text(exc: BaseException) -> str | None:
    """One line saying why the database could not be used, if `exc` is a database
    driver's error (sqlite3, SQLAlchemy, psycopg); None for any other exception.

    Looks the driver modules up in `sys.modules` instead of importing them: an error
    cannot come from a driver that was never loaded, and the SQLite read path must
    not pay for importing SQLAlchemy.
    """
    if isinstance(exc, SnapshotError):
        return str(exc)
    if isinstance(exc, sqlite3.Error):
        return _first_line(exc)
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError):
        # The driver's own message says what happened; SQLAlchemy's wrapper adds the
        # statement and a link on further lines.
        return _first_line(getattr(exc, "orig", None) or exc)
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.Error):
        return _first_line(exc)
    return None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def safe_db_url(url: str) -> str:
    """`url` without its password and query (options can be long and say nothing)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class RunLine(NamedTuple):
    """What one line of a run listing shows, without the rest of the run.

    Read straight from the driver's tuples: a full RunRecord costs ~15 µs to build,
    which on 10,000 runs is half of what `qqtui ls` may take in all.
    """

    id: int
    status: Status
    hung: bool
    waiting: bool
    name: str
    agent: str
    pid: int | None
    started_at: float | None
    finished_at: float | None
    activity_at: float | None
    reason: str | None
    exit_code: int | None  # the outcome of an ended run with no reason
    cancel_requested: bool
    kill_requested: bool
    host: str | None

    @classmethod
    def of(cls, run: RunRecord) -> RunLine:
        return cls(*(getattr(run, name) for name in cls._fields))

    @property
    def is_active(self) -> bool:
        return self.status in (Status.QUEUED, Status.RUNNING)

    def runtime_s(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else now
        return max(0.0, end - self.started_at)


# A projection may narrow the record, never name a column it does not have.
require_projection(RunLine, RunRecord)
_RUN_LINE_SQL = f"SELECT {', '.join(RunLine._fields)} FROM runs"
# Only a running run changes without a version bump (its worker's pid, activity and
# output writes); every other change is a transition, which bumps the version.
_REREAD_ALWAYS = frozenset({str(Status.RUNNING)})


class Snapshot(ABC):
    """Reads runs, events, workers and output tails; cheap to construct.

    One contract, two readers, picked once when the snapshot is made (as `pathlib.Path`
    picks its flavour): `Snapshot(url)` is a `SqliteSnapshot` for a SQLite URL, which
    reads the file with the stdlib driver, and a `StoreSnapshot` for any other, which
    reads through the store. Either raises `SnapshotError` for a database that cannot
    be read.

    `busy_timeout_s` bounds how long a SQLite read waits for a lock: a live view
    would rather say "locked" after a few seconds than sit silent for thirty.
    """

    def __new__(cls, db_url: str, *, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> Snapshot:
        if cls is Snapshot:
            cls = SqliteSnapshot if sqlite_path(db_url) is not None else StoreSnapshot
        return super().__new__(cls)

    def __init__(self, db_url: str, *, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
        self.db_url = db_url
        self.busy_timeout_s = busy_timeout_s

    @abstractmethod
    def runs(self, statuses: Iterable[Status] | None = None) -> list[RunRecord]:
        """The runs in `statuses` (None: all), by id."""

    @abstractmethod
    def runs_reusing(self, cached: Mapping[int, RunRecord]) -> dict[int, RunRecord]:
        """Every run by id, like `runs()`; a record in `cached` may be returned as is
        (the same object) for a run that cannot have changed since it was read."""

    @abstractmethod
    def runs_json(self, statuses: Iterable[Status] | None = None) -> list[dict[str, Any]]:
        """`[run.to_json() for run in self.runs(statuses)]`."""

    @abstractmethod
    def run_lines(
        self, statuses: Iterable[Status] | None = None, hosts: Iterable[str] | None = None
    ) -> list[RunLine]:
        """The listing columns of the runs in `statuses` on `hosts` (None: all), by id."""

    @abstractmethod
    def run(self, run_id: int) -> RunRecord | None:
        """One run (None: there is no such run)."""

    @abstractmethod
    def events(self, run_id: int) -> list[EventRecord]:
        """A run's events, oldest first."""

    @abstractmethod
    def session_summaries(self) -> dict[str, tuple[int, str, int]]:
        """session id -> (run count, status of its newest run, newest run id)."""

    @abstractmethod
    def workers(self, *, live_only: bool = False) -> list[WorkerRecord]:
        """Registered workers, oldest first (`live_only`: not stopped)."""

    @abstractmethod
    def output_tail(self, run_id: int) -> OutputTail | None:
        """The output tail a run's worker keeps in the database (None: there is none)."""

    @abstractmethod
    def server_time(self) -> float:
        """Now by the clock the store decides by: the server's on PostgreSQL."""

    @abstractmethod
    def clock_skew_s(self) -> float | None:
        """This host's wall clock minus the database server's (None: same clock)."""


class SqliteSnapshot(Snapshot):
    """Reads a SQLite file with the stdlib driver, one connection per call."""

    def __init__(self, db_url: str, *, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
        super().__init__(db_url, busy_timeout_s=busy_timeout_s)
        path = sqlite_path(db_url)
        if path is None:
            raise ValueError(f"not a SQLite URL: {safe_db_url(db_url)}")
        self.path = path

    def _query(self, sql: str, params: Iterable[Any] = (), *, as_tuples: bool = False) -> list[Any]:
        """Rows of `sql` as dicts (`as_tuples`: the driver's tuples, in column order)."""
        if not self.path.exists():
            folder = self.path.parent
            if not folder.is_dir():
                # A typo'd --db or a home that is a file is an error, not an empty list.
                what = "does not exist" if not folder.exists() else "is not a directory"
                raise SnapshotError(f"cannot use database {self.path}: {folder} {what}")
            return []
        try:
            with closing(sqlite3.connect(self.path, timeout=self.busy_timeout_s)) as conn:
                conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
                cursor = conn.execute(sql, tuple(params))
                if as_tuples:
                    return cursor.fetchall()
                # Plain dicts: sqlite3.Row looks names up by a case-insensitive scan,
                # which made reading 10,000 runs cost a second.
                names = [d[0] for d in cursor.description or ()]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if "no such table" in text:
                if self._has_tables():
                    # Another program's database: its tables are not ours to call empty.
                    raise SnapshotError(
                        f"cannot use database {self.path}: the file is not a qqtui database "
                        "(it has tables, but no runs table)"
                    ) from exc
                return []  # a database still being created: no schema yet, no runs
            if "not a database" in text or "malformed" in text:
                raise SnapshotError(
                    f"cannot use database {self.path}: the file is not a qqtui database "
                    "or is corrupt"
                ) from exc
            if "locked" in text:
                text = "the database is locked by another process"
            raise SnapshotError(f"cannot read database {self.path}: {text}") from exc

    def _has_tables(self) -> bool:
        try:
            with closing(sqlite3.connect(self.path, timeout=self.busy_timeout_s)) as conn:
                return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
        except sqlite3.DatabaseError:
            return False

    def runs(self, statuses: Iterable[Status] | None = None) -> list[RunRecord]:
        wanted = [str(s) for s in statuses] if statuses is not None else None
        sql = "SELECT * FROM runs"
        params: list[Any] = []
        if wanted is not None:
            sql += f" WHERE status IN ({','.join('?' * len(wanted))})"
            params = wanted
        sql += " ORDER BY id"
        return [RunRecord.from_row(r) for r in self._query(sql, params)]

    def runs_reusing(self, cached: Mapping[int, RunRecord]) -> dict[int, RunRecord]:
        """Turning 10,000 rows into records costs about half a second; a finished run
        only changes through a transition, which bumps its version. So this reads
        (id, version, status) of all runs and the full rows of the running, new and
        re-versioned ones; the rest are the records of `cached`."""
        stale: list[int] = []
        present: list[int] = []
        for row in self._query("SELECT id, version, status FROM runs ORDER BY id"):
            run_id = row["id"]
            present.append(run_id)
            old = cached.get(run_id)
            if old is None or old.version != row["version"] or row["status"] in _REREAD_ALWAYS:
                stale.append(run_id)
        fresh: dict[int, RunRecord] = {}
        for start in range(0, len(stale), 500):
            chunk = stale[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._query(f"SELECT * FROM runs WHERE id IN ({marks})", chunk):
                fresh[row["id"]] = RunRecord.from_row(row)
        runs = {}
        for run_id in present:
            run = fresh.get(run_id) or cached.get(run_id)
            if run is not None:
                runs[run_id] = run
        return runs

    def runs_json(self, statuses: Iterable[Status] | None = None) -> list[dict[str, Any]]:
        """Built straight from the rows, without a RunRecord per run."""
        wanted = [str(s) for s in statuses] if statuses is not None else []
        where = f" WHERE status IN ({','.join('?' * len(wanted))})" if statuses is not None else ""
        sql = f"SELECT {', '.join(RUN_FIELDS)} FROM runs{where} ORDER BY id"
        try:
            rows = self._query(sql, wanted, as_tuples=True)
        except SnapshotError as exc:
            if "no such column" not in str(exc):
                raise
            # A file from before the newest columns, not yet migrated by a store.
            return [run.to_json() for run in self.runs(statuses)]
        return [RunRecord.json_of_values(row) for row in rows]

    def run_lines(
        self, statuses: Iterable[Status] | None = None, hosts: Iterable[str] | None = None
    ) -> list[RunLine]:
        wanted = [str(s) for s in statuses] if statuses is not None else None
        on_hosts = sorted(set(hosts)) if hosts is not None else None
        clauses: list[str] = []
        params: list[Any] = []
        for column, values in (("status", wanted), ("host", on_hosts)):
            if values is not None:
                clauses.append(f"{column} IN ({','.join('?' * len(values))})")
                params += values
        sql = _RUN_LINE_SQL + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
        by_value = {str(s): s for s in Status}
        rows = self._query(sql + " ORDER BY id", params, as_tuples=True)
        # Columns in RunLine's order; only the status and the four flags need decoding.
        return [
            RunLine(
                run_id,
                by_value[status],
                bool(hung),
                bool(waiting),
                *middle,
                bool(cancel),
                bool(kill),
                host,
            )
            for run_id, status, hung, waiting, *middle, cancel, kill, host in rows
        ]

    def run(self, run_id: int) -> RunRecord | None:
        rows = self._query("SELECT * FROM runs WHERE id = ?", [run_id])
        return RunRecord.from_row(rows[0]) if rows else None

    def events(self, run_id: int) -> list[EventRecord]:
        rows = self._query("SELECT * FROM events WHERE run_id = ? ORDER BY id", [run_id])
        return [EventRecord.from_row(r) for r in rows]

    def session_summaries(self) -> dict[str, tuple[int, str, int]]:
        rows = self._query(
            "SELECT session_id, COUNT(*) AS n, MAX(id) AS last_id FROM runs GROUP BY session_id"
        )
        last_ids = [r["last_id"] for r in rows]
        statuses: dict[int, str] = {}
        for start in range(0, len(last_ids), 500):
            chunk = last_ids[start : start + 500]
            for r in self._query(
                f"SELECT id, status FROM runs WHERE id IN ({','.join('?' * len(chunk))})", chunk
            ):
                statuses[r["id"]] = r["status"]
        return {
            r["session_id"]: (r["n"], statuses.get(r["last_id"], ""), r["last_id"]) for r in rows
        }

    def workers(self, *, live_only: bool = False) -> list[WorkerRecord]:
        sql = "SELECT * FROM workers"
        if live_only:
            sql += " WHERE stopped_at IS NULL"
        rows = self._query(sql + " ORDER BY started_at")
        # A file made before schema 2 has no clock_skew_s column: no skew known.
        return [WorkerRecord.from_row({"clock_skew_s": None, **row}) for row in rows]

    def output_tail(self, run_id: int) -> OutputTail | None:
        rows = self._query("SELECT * FROM run_outputs WHERE run_id = ?", [run_id])
        return OutputTail.from_row(rows[0]) if rows else None

    def server_time(self) -> float:
        return time.time()

    def clock_skew_s(self) -> float | None:
        return None


class StoreSnapshot(Snapshot):
    """Reads any other database (PostgreSQL) through one store, opened on first use."""

    def __init__(self, db_url: str, *, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
        super().__init__(db_url, busy_timeout_s=busy_timeout_s)
        self._shared_store: Any = None

    def _store(self) -> Any:
        # One store (one pool) per snapshot: a TUI polling a server must not open and
        # check the schema on every read.
        if self._shared_store is None:
            from qqtui.core.store import Store

            self._shared_store = Store.open(self.db_url)
        return self._shared_store

    def _from_store(self, read: Callable[[Any], T]) -> T:
        """`read(store)`, with the database's errors turned into one-line SnapshotErrors."""
        try:
            return read(self._store())
        except SnapshotError:
            raise
        except NotFoundError:
            raise
        except QqError as exc:  # the store could not open or check the schema
            raise SnapshotError(str(exc)) from exc
        except Exception as exc:
            cause = database_error_text(exc)
            if cause is None:
                raise
            raise SnapshotError(
                f"cannot read database {safe_db_url(self.db_url)}: {cause}"
            ) from exc

    def runs(self, statuses: Iterable[Status] | None = None) -> list[RunRecord]:
        return self._from_store(lambda store: store.list_runs(statuses))

    def runs_reusing(self, cached: Mapping[int, RunRecord]) -> dict[int, RunRecord]:
        return {run.id: run for run in self.runs()}

    def runs_json(self, statuses: Iterable[Status] | None = None) -> list[dict[str, Any]]:
        return [run.to_json() for run in self.runs(statuses)]

    def run_lines(
        self, statuses: Iterable[Status] | None = None, hosts: Iterable[str] | None = None
    ) -> list[RunLine]:
        on_hosts = sorted(set(hosts)) if hosts is not None else None
        return [
            RunLine.of(run)
            for run in self.runs(statuses)
            if on_hosts is None or run.host in on_hosts
        ]

    def run(self, run_id: int) -> RunRecord | None:
        try:
            return self._from_store(lambda store: store.get_run(run_id))
        except NotFoundError:
            return None

    def events(self, run_id: int) -> list[EventRecord]:
        return self._from_store(lambda store: store.events(run_id))

    def session_summaries(self) -> dict[str, tuple[int, str, int]]:
        out: dict[str, tuple[int, str, int]] = {}
        for run in self._from_store(lambda store: store.list_runs()):
            count = out.get(run.session_id, (0, "", 0))[0] + 1
            out[run.session_id] = (count, str(run.status), run.id)
        return out

    def workers(self, *, live_only: bool = False) -> list[WorkerRecord]:
        return self._from_store(lambda store: store.workers(live_only=live_only))

    def output_tail(self, run_id: int) -> OutputTail | None:
        return self._from_store(lambda store: store.output_tail(run_id))

    def server_time(self) -> float:
        return self._from_store(lambda store: store.server_time())

    def clock_skew_s(self) -> float | None:
        return self._from_store(lambda store: store.clock_skew_s)
