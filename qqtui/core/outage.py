"""Riding out a database outage: what a lost connection raises, the backoff with
jitter between tries, and since when the database answers again."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

from qqtui.core.records import QqError

log = logging.getLogger("qqtui.supervisor")


class DatabaseUnreachable(QqError):
    """Run ends are waiting for the database to come back."""


# What a lost connection or a restarting server raises: the worker waits and retries.
DB_ERRORS: tuple[type[Exception], ...] = (DBAPIError, DatabaseUnreachable)


def db_error_line(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return (str(orig or exc).splitlines() or [type(exc).__name__])[0]


@dataclass(slots=True)
class DbBackoff:
    """One worker's view of the database: failures in a row, and since when it answers."""

    retry_base_s: float  # the first wait, doubling with each failure
    retry_cap_s: float
    failures: int = 0
    ok_since: float | None = None  # monotonic time since the database answers

    def wait(
        self, exc: Exception, *, stopping: Callable[[], bool], meanwhile: Callable[[], None]
    ) -> None:
        """Wait before the next try: exponential backoff with jitter, so a fleet of
        workers does not hammer a server that is coming back up. `meanwhile` runs every
        slice of the wait (its database errors ignored) until `stopping()`."""
        self.ok_since = None
        self.failures += 1
        delay = min(self.retry_cap_s, self.retry_base_s * 2 ** (self.failures - 1))
        delay *= random.uniform(0.5, 1.0)
        log.warning(
            "database unreachable, retrying in %.1fs (attempt %d; runs keep running): %s",
            delay,
            self.failures,
            db_error_line(exc),
        )
        # Not select(): a finished run's report pipe stays readable and would end the
        # wait at once. Short slices keep a stop request and pending KILLs timely.
        deadline = time.monotonic() + delay
        while not stopping() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.2, left))
            with contextlib.suppress(*DB_ERRORS):
                meanwhile()

    def ok(self) -> None:
        if self.failures:
            log.info("database reachable again after %d failed attempts", self.failures)
        self.failures = 0
        if self.ok_since is None:
            self.ok_since = time.monotonic()
