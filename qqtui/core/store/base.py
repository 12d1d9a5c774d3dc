"""The store's footing: the engine and clock, read and write transactions, driver-level
statements, reading one run, and the event log every change appends to.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, Engine, select

from qqtui.core.clock import ServerClock
from qqtui.core.dialects import (
    HeldConnection,
    driver_cursor,
    driver_sql,
    forget_engine,
    is_postgres,
    server_epoch,
)
from qqtui.core.models import events_table
from qqtui.core.records import RUN_FIELDS, EventRecord, NotFoundError, RunRecord

_SELECT_RUNS = f"SELECT {', '.join(RUN_FIELDS)} FROM runs"
_INSERT_EVENT = (
    "INSERT INTO events (run_id, at, kind, from_status, to_status, reason, actor, host)"
    " VALUES (:run_id, :at, :kind, :from_status, :to_status, :reason, :actor, :host)"
)


def _now() -> float:
    return time.time()


class StoreBase:
    """What every part of the store stands on: its engine, its clock, its connections."""

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

    @property
    def shared(self) -> bool:
        """Whether workers on other hosts may use this store (PostgreSQL)."""
        return is_postgres(self.engine)

    @property
    def clock_skew_s(self) -> float | None:
        """This host's wall clock minus the server's (None: the store uses this clock)."""
        return self.server_clock.skew_s if self.server_clock is not None else None

    def close(self) -> None:
        self._claims.close()
        forget_engine(self.engine)

    # -- transactions

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

    # -- reading one run (every optimistic write starts from it)

    def get_run(self, run_id: int) -> RunRecord:
        with self._read() as conn:
            return self._get(conn, run_id)

    def _get(self, conn: Connection, run_id: int) -> RunRecord:
        runs = self._select_runs(conn, "id = :id", {"id": run_id})
        if not runs:
            raise NotFoundError(f"no run with id {run_id}")
        return runs[0]

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
                RunRecord.from_row(dict(zip(RUN_FIELDS, r, strict=True))) for r in cur.fetchall()
            ]

    def server_time(self) -> float:
        """Now, by the clock this store decides by (the server's on PostgreSQL)."""
        return self.clock()
