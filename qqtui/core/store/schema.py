"""The schema: create it on first use, migrate an older one, refuse a newer one or a
foreign SQLite file.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import Connection, Engine, inspect, select, text, update
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlmodel import SQLModel

from qqtui.core.dialects import StoreError, is_postgres, lock_schema
from qqtui.core.models import RETIRED_RUN_INDEXES, SCHEMA_VERSION, meta_table, runs_table
from qqtui.core.store.base import StoreBase


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


class SchemaMixin(StoreBase):
    """Creates, checks and migrates the tables."""

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
                if found == "3":
                    _migrate_3_to_4(conn)
                    found = "4"
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
            raise StoreError(
                f"cannot use database {_safe_url(self.engine)}: {_db_error(exc)}"
            ) from exc


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


def _migrate_3_to_4(conn: Connection) -> None:
    false = "false" if is_postgres(conn) else "0"
    for column, sql_type in (
        ("tty", f"BOOLEAN NOT NULL DEFAULT {false}"),
        ("tty_cols", "INTEGER"),
        ("tty_rows", "INTEGER"),
        ("waiting", f"BOOLEAN NOT NULL DEFAULT {false}"),
        ("waiting_reason", "TEXT"),
        ("waiting_since", "FLOAT"),
    ):
        conn.execute(text(f"ALTER TABLE runs ADD COLUMN {column} {sql_type}"))


def _safe_url(engine: Engine) -> str:
    """The URL without its password, for error messages."""
    return engine.url.render_as_string(hide_password=True)


def _db_error(exc: DatabaseError) -> str:
    text = str(exc.orig) if getattr(exc, "orig", None) is not None else str(exc)
    if isinstance(exc, OperationalError) and "locked" in text:
        return "the database is locked by another process"
    if "not a database" in text or "malformed" in text:
        return "the file is not a qqtui database or is corrupt"
    return text.splitlines()[0]
