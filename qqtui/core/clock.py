"""The clock a shared store decides by: the database server's, never a worker's.

With workers on several hosts, "is this heartbeat older than 60 s", "is this retry
due" and "has this run timed out" must all be answered against one clock, or a
host whose clock runs fast rescues runs that are alive and one that runs slow
never times anything out. The one clock every host can see is the server's.

Asking the server on every call would add a round trip to every write, so the
offset between the server's clock and this process's *monotonic* clock is
measured once and refreshed periodically. Reading `monotonic() + offset` is
immune to this host's wall clock being stepped (NTP, a user, a VM resume), and
between refreshes it can only drift by the monotonic clock's rate error (tens of
ppm: well under a millisecond per refresh interval). The measurement itself is
off by at most half a round trip, which is far below the seconds that any of
the decisions above care about.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from qqtui.core.records import CLOCK_SKEW_WARN_S

log = logging.getLogger("qqtui.clock")

REFRESH_S = 30.0


class ServerClock:
    """`clock()` returns the database server's time as a Unix timestamp."""

    def __init__(
        self,
        read_server: Callable[[], float],
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self._read_server = read_server
        self._wall = wall
        self._monotonic = monotonic
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._offset: float | None = None  # server time minus monotonic time
        self._measured_at = 0.0
        self.skew_s: float | None = None  # this host's wall clock minus the server's
        self._warned = False

    def measure(self) -> None:
        """Ask the server for its time now (raises the database's error if it is down)."""
        before = self._monotonic()
        server = self._read_server()
        after = self._monotonic()
        wall = self._wall()
        mid = (before + after) / 2  # the server read its clock about half way through
        with self._lock:
            self._offset = server - mid
            self._measured_at = after
            self.skew_s = wall - (server + (after - mid))
        skewed = abs(self.skew_s) >= CLOCK_SKEW_WARN_S
        if skewed and not self._warned:
            log.warning(
                "this host's clock is %+.0fs off the database server's; qqtui decides by the "
                "server's clock, but times this host prints may look wrong (fix NTP)",
                self.skew_s,
            )
        self._warned = skewed

    def __call__(self) -> float:
        now = self._monotonic()
        if self._offset is None or now - self._measured_at >= self.refresh_s:
            try:
                self.measure()
            except Exception:
                # The server is unreachable: the last offset stays right (it is relative
                # to the monotonic clock); without one there is no server time to give.
                if self._offset is None:
                    raise
                log.debug("cannot refresh the server clock; keeping the last offset")
                self._measured_at = now  # do not retry on every call while it is down
            now = self._monotonic()
        assert self._offset is not None
        return now + self._offset
