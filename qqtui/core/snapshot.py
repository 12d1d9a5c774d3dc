"""Read-only snapshots of the job table without importing SQLAlchemy.

`qqtui ls` must answer in well under 300 ms on 10,000 runs, and importing
SQLAlchemy alone costs about that. For SQLite the stdlib driver reads the same
tables; any other database goes through the full store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing
from typing import Any

from qqtui.config import sqlite_path
from qqtui.core.records import EventRecord, QqError, RunRecord, Status


class SnapshotError(QqError):
    pass


class Snapshot:
    """Reads runs and events; cheap to construct, one connection per call."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.path = sqlite_path(db_url)
        self._shared_store: Any = None

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        assert self.path is not None
        if not self.path.exists():
            return []
        try:
            with closing(sqlite3.connect(self.path, timeout=30)) as conn:
                conn.execute("PRAGMA busy_timeout=30000")
                cursor = conn.execute(sql, tuple(params))
                # Plain dicts: sqlite3.Row looks names up by a case-insensitive scan,
                # which made reading 10,000 runs cost a second.
                names = [d[0] for d in cursor.description or ()]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if "no such table" in text:
                return []
            if "not a database" in text or "malformed" in text:
                raise SnapshotError(
                    f"cannot use database {self.path}: the file is not a qqtui database "
                    "or is corrupt"
                ) from exc
            raise SnapshotError(f"cannot read database {self.path}: {text}") from exc

    def _store(self) -> Any:
        # One store (one pool) per snapshot: a TUI polling a server must not open and
        # check the schema on every read.
        if self._shared_store is None:
            from qqtui.core.store import Store

            self._shared_store = Store.open(self.db_url)
        return self._shared_store

    def runs(self, statuses: Iterable[Status] | None = None) -> list[RunRecord]:
        wanted = [str(s) for s in statuses] if statuses is not None else None
        if self.path is None:
            return self._store().list_runs(statuses)
        sql = "SELECT * FROM runs"
        params: list[Any] = []
        if wanted is not None:
            sql += f" WHERE status IN ({','.join('?' * len(wanted))})"
            params = wanted
        sql += " ORDER BY id"
        return [RunRecord.from_row(r) for r in self._query(sql, params)]

    def run(self, run_id: int) -> RunRecord | None:
        if self.path is None:
            from qqtui.core.records import NotFoundError

            try:
                return self._store().get_run(run_id)
            except NotFoundError:
                return None
        rows = self._query("SELECT * FROM runs WHERE id = ?", [run_id])
        return RunRecord.from_row(rows[0]) if rows else None

    def events(self, run_id: int) -> list[EventRecord]:
        if self.path is None:
            return self._store().events(run_id)
        rows = self._query("SELECT * FROM events WHERE run_id = ? ORDER BY id", [run_id])
        return [EventRecord.from_row(r) for r in rows]

    def session_summaries(self) -> dict[str, tuple[int, str, int]]:
        """session id -> (run count, status of its newest run, newest run id)."""
        if self.path is None:
            out: dict[str, tuple[int, str, int]] = {}
            for run in self._store().list_runs():
                count = out.get(run.session_id, (0, "", 0))[0] + 1
                out[run.session_id] = (count, str(run.status), run.id)
            return out
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
