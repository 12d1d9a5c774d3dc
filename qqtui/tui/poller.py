"""PollThread: the app's one long-lived poll thread, which polls when the app asks, and
InputGate, where it steps aside while the app handles a key press.

The app asks for the next poll once it has shown the last one (now, after the poll
interval, or after an outage's backoff), so polls never overlap and never pile up
behind a busy screen. A Textual thread worker per poll cost an idle app more than the
poll itself: a thread, a Worker object with its state messages and a timer task, every
second (see bench/README.md, "App").

Python runs one thread at a time. A poll with 100 runs is ~35 ms of work, and a key
press that came during it shared the interpreter with it, so its frame took up to twice
as long. So the poll pauses at its checkpoints from the moment a key arrives until the
app has shown the answer (bounded, so input cannot hold polls back for long).
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


class InputGate:
    """Open unless the app is handling input; `checkpoint` (called by the poll thread
    between pieces of its work) waits while it is closed, up to `max_wait_s` per poll."""

    def __init__(self, max_wait_s: float = 0.25) -> None:
        self._open = threading.Event()
        self._open.set()
        self._max_wait_s = max_wait_s
        self._waited = 0.0

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def close(self) -> None:
        """Input arrived (any thread)."""
        self._open.clear()

    def open(self) -> None:
        """The app has shown its answer to the input."""
        self._open.set()

    def start_poll(self) -> None:
        """A new poll begins: it may wait `max_wait_s` again."""
        self._waited = 0.0

    def checkpoint(self) -> None:
        if self._open.is_set() or self._waited >= self._max_wait_s:
            return
        started = time.monotonic()
        self._open.wait(self._max_wait_s - self._waited)
        self._waited += time.monotonic() - started
