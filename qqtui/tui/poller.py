"""PollThread: the app's one long-lived poll thread, which polls when the app asks.

The app asks for the next poll once it has shown the last one (now, after the poll
interval, or after an outage's backoff), so polls never overlap and never pile up
behind a busy screen. A Textual thread worker per poll cost an idle app more than the
poll itself: a thread, a Worker object with its state messages and a timer task, every
second (see bench/README.md, "App").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class PollThread:
    """Runs `poll()` on its own thread, one call at a time, when `request`ed."""

    def __init__(self, poll: Callable[[], None], *, name: str = "qqtui-poll") -> None:
        self._poll = poll
        self._cond = threading.Condition()
        self._due: float | None = None
        self._stopped = False
        # A daemon: a poll stuck on an unreachable database must not hold up quitting.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self, delay: float) -> None:
        """Poll once, `delay` seconds from now, or sooner if a request that has not
        started yet asked for sooner (a poll asked for "now" while one runs is not
        pushed back by the running one's "again in a second")."""
        due = time.monotonic() + max(0.0, delay)
        with self._cond:
            if self._due is None or due < self._due:
                self._due = due
                self._cond.notify()

    def stop(self, timeout: float = 2.0) -> None:
        """No more polls; wait up to `timeout` seconds for one in progress to end."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._due is not None:
                        wait = self._due - time.monotonic()
                        if wait <= 0:
                            break
                    else:
                        wait = None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                self._due = None
            self._poll()
