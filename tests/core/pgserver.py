"""The real PostgreSQL server the multi-host tests use: reachability and fresh schemas.

Under CI (CI=true) an unreachable server fails the PostgreSQL tests; elsewhere they
skip, so a laptop without PostgreSQL still runs the SQLite half of the suite.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

PG_URL = os.environ.get("QQTUI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
_reachable: bool | str | None = None


def _probe() -> bool | str:
    import psycopg

    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def require_pg() -> None:
    """Skip (or, under CI, fail) the calling test when the server is unreachable."""
    global _reachable
    if _reachable is not True:
        _reachable = _probe()  # re-probe: a restart test may have just brought it back
    if _reachable is not True:
        message = f"PostgreSQL at {PG_URL} is unreachable: {_reachable}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)


def admin_execute(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A URL whose search_path is a new, empty schema, dropped afterwards."""
    require_pg()
    name = f"qqtest_{uuid.uuid4().hex[:12]}"
    admin_execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options={quote(f'-csearch_path={name}', safe='')}"
    finally:
        with contextlib.suppress(Exception):
            admin_execute(f"DROP SCHEMA {name} CASCADE")
