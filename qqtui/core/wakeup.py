"""Instant nudges from writers (add, cancel, kill) to the workers of the same home.

Each worker listens on an abstract-namespace Unix datagram socket; a nudge is one
byte. Workers still poll, so a lost nudge only costs one poll interval.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
from collections.abc import Iterable


def _address(db_url: str, worker_id: str) -> bytes:
    digest = hashlib.sha256(db_url.encode()).hexdigest()[:16]
    return f"\0qqtui-wake/{digest}/{worker_id}".encode()


class WakeSocket:
    """The receiving end, owned by one worker."""

    def __init__(self, db_url: str, worker_id: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(_address(db_url, worker_id))
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self.sock.recv(64):
                pass

    def close(self) -> None:
        self.sock.close()


def nudge(db_url: str, worker_ids: Iterable[str]) -> int:
    """Wake the given workers on this host; returns how many were reached."""
    reached = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.setblocking(False)
        for worker_id in worker_ids:
            with contextlib.suppress(OSError):
                sock.sendto(b"!", _address(db_url, worker_id))
                reached += 1
    return reached
