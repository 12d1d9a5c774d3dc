"""PollThread: one poll at a time, on request, the soonest request winning; InputGate:
where a poll steps aside for input, for a bounded time."""

from __future__ import annotations

import threading
import time

from qqtui.tui.poller import InputGate, PollThread


class Recorder:
    def __init__(self, hold: threading.Event | None = None) -> None:
        self.calls: list[float] = []
        self.threads: set[str] = set()
        self.running = threading.Event()
        self.hold = hold
        self.done = threading.Semaphore(0)

    def __call__(self) -> None:
        self.threads.add(threading.current_thread().name)
        self.calls.append(time.monotonic())
        self.running.set()
        if self.hold is not None:
            self.hold.wait(10)
        self.done.release()


def test_polls_once_per_request_after_the_delay_on_its_own_thread() -> None:
    rec = Recorder()
    poller = PollThread(rec, name="test-poll")
    poller.start()
    try:
        asked = time.monotonic()
        poller.request(0.2)
        assert rec.done.acquire(timeout=5)
        assert rec.calls[0] - asked >= 0.19
        time.sleep(0.3)
        assert len(rec.calls) == 1  # one request, one poll: nothing repeats by itself
        assert rec.threads == {"test-poll"}
    finally:
        poller.stop()


def test_a_sooner_request_wins_and_a_later_one_does_not_push_it_back() -> None:
    rec = Recorder()
    poller = PollThread(rec)
    poller.start()
    try:
        poller.request(30.0)
        poller.request(0.0)  # "poll now" beats "in 30 s"
        assert rec.done.acquire(timeout=5)
        poller.request(0.1)
        poller.request(30.0)  # "again later" must not delay a pending "soon"
        assert rec.done.acquire(timeout=5)
        assert len(rec.calls) == 2
    finally:
        poller.stop()


def test_a_request_during_a_poll_runs_once_right_after_it() -> None:
    hold = threading.Event()
    rec = Recorder(hold)
    poller = PollThread(rec)
    poller.start()
    try:
        poller.request(0.0)
        assert rec.running.wait(5)
        poller.request(0.0)
        poller.request(0.0)
        time.sleep(0.1)
        assert len(rec.calls) == 1  # never two at once
        hold.set()
        assert rec.done.acquire(timeout=5) and rec.done.acquire(timeout=5)
        time.sleep(0.2)
        assert len(rec.calls) == 2  # the requests made meanwhile ran once, not twice
    finally:
        poller.stop()


def test_stop_ends_the_thread_and_drops_pending_requests() -> None:
    rec = Recorder()
    poller = PollThread(rec, name="test-stop-poll")
    poller.start()
    poller.request(0.3)
    poller.stop()
    assert poller.stopped
    time.sleep(0.5)
    assert rec.calls == []
    assert not any(t.name == "test-stop-poll" and t.is_alive() for t in threading.enumerate())


def test_a_closed_gate_holds_the_poll_thread_until_it_opens() -> None:
    gate = InputGate(max_wait_s=5.0)
    gate.start_poll()
    gate.checkpoint()  # open: no wait
    gate.close()
    passed = threading.Event()

    def poll() -> None:
        gate.checkpoint()
        passed.set()

    thread = threading.Thread(target=poll)
    thread.start()
    assert not passed.wait(0.2)  # held while input is being handled
    opened = time.monotonic()
    gate.open()
    assert passed.wait(2)
    assert time.monotonic() - opened < 0.5
    thread.join()


def test_input_holds_a_poll_back_only_so_long() -> None:
    gate = InputGate(max_wait_s=0.2)
    gate.close()  # and never opened: input that is never answered must not stop polls
    gate.start_poll()
    started = time.monotonic()
    for _ in range(10):
        gate.checkpoint()
    assert 0.19 <= time.monotonic() - started < 0.6  # 0.2 s for the poll, not per call
    gate.start_poll()  # the next poll may wait again
    started = time.monotonic()
    gate.checkpoint()
    assert time.monotonic() - started >= 0.19
