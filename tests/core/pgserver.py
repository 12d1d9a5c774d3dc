"""The real PostgreSQL server the multi-host tests use: reachability and fresh schemas.

Under CI (CI=true) an unreachable server fails the PostgreSQL tests; elsewhere they
skip, so a laptop without PostgreSQL still runs the SQLite half of the suite.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
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


class TcpRelay:
    """Relays a local port to the server, to take the database away from one client
    without disturbing anyone else using it. `stop()` closes the listener and every relayed
    connection, so the server looks gone (connections are refused); `start()` listens
    on the same port again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.start()

    def start(self) -> None:
        if self._listener is not None:
            return  # already relaying
        # create_server sets SO_REUSEADDR: the port is free again right after stop().
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            # shutdown first: close() alone leaves the socket listening while the accept
            # thread is blocked on it.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
