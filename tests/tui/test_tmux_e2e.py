"""End to end: the real `qqtui` in a real terminal (tmux). Start a run with `n`, see it
running, cancel it with `c`, see it cancelled."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from qqtui.core.records import Status
from qqtui.core.snapshot import Snapshot
from qqtui.core.store import Store
from tests.tui.conftest import RANDOM_KEY_NAMES, clean_env, kill_home_processes

TMUX = shutil.which("tmux")


class Tmux:
    """One tmux server of our own (its own socket), one 160x45 window."""

    def __init__(self, socket: str) -> None:
        assert TMUX is not None
        self.base = [TMUX, "-L", socket]
        self.session = "qqtui-e2e"

    def start(self, command: str, env: dict[str, str]) -> None:
        subprocess.run(
            [*self.base, "new-session", "-d", "-s", self.session, "-x", "160", "-y", "45", command],
            env=env,
            check=True,
        )

    def keys(self, *keys: str, literal: bool = False) -> None:
        extra = ["-l"] if literal else []
        subprocess.run([*self.base, "send-keys", "-t", self.session, *extra, *keys], check=True)

    def screen(self) -> str:
        result = subprocess.run(
            [*self.base, "capture-pane", "-p", "-t", self.session],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout

    def wait_for(self, predicate: Callable[[str], bool], what: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; screen was:\n{text}")
            time.sleep(0.1)

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if TMUX is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tmux is required under CI for the end-to-end test")
        pytest.skip("tmux is not installed")
    server = Tmux(f"qqtui-test-{os.getpid()}-{tmp_path.name}")
    yield server
    server.kill()


def _stop_workers(home: Path, db_url: str) -> None:
    store = Store.open(db_url)
    try:
        for worker in store.workers(live_only=True):
            try:
                proc = psutil.Process(worker.pid)
                if abs(proc.create_time() - worker.pid_create_time) < 1:
                    proc.terminate()
                    proc.wait(timeout=20)
            except psutil.Error:
                continue
    finally:
        store.close()
    kill_home_processes(home)


def test_launch_see_running_cancel_see_cancelled(tmux: Tmux, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    db_url = f"sqlite:///{home / 'qqtui.db'}"
    env = clean_env(home)
    try:
        tmux.start(f"cd {home} && exec {sys.executable} -m qqtui", env)
        tmux.wait_for(lambda s: "0 running" in s and "n Launch" in s, "the app to open")

        tmux.keys("n")
        tmux.wait_for(lambda s: "Launch a run" in s, "the launch form")
        tmux.keys("sleep 300", literal=True)
        tmux.wait_for(lambda s: "sleep 300" in s, "the typed command")
        tmux.keys("C-s")

        screen = tmux.wait_for(
            lambda s: "▶ running" in s and "1 running" in s,
            "the run to show as running",
        )
        assert "Queued run 1" in screen or "1 running" in screen
        runs = Snapshot(db_url).runs()
        assert len(runs) == 1 and runs[0].status is Status.RUNNING
        assert runs[0].argv == ("sleep", "300") and runs[0].name == "sleep"

        tmux.keys("c")
        tmux.wait_for(lambda s: "Cancel run 1" in s, "the confirmation")
        tmux.keys("y")
        tmux.wait_for(
            lambda s: "■ cancelled" in s and "1 cancelled" in s, "the run to show as cancelled"
        )
        assert Snapshot(db_url).run(1).status is Status.CANCELLED  # type: ignore[union-attr]

        tmux.keys("q")
        tmux.wait_for(lambda s: "Launch" not in s, "the app to quit", timeout=10)
    finally:
        _stop_workers(home, db_url)


def test_demo_review_waits_attach_answer_y_and_it_succeeds(tmux: Tmux, tmp_path: Path) -> None:
    """Issue #15 end to end, as a user would: `qqtui demo`, see the interactive agent
    waiting, attach to its terminal, answer y, see it succeed."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    db_url = f"sqlite:///{home / 'qqtui.db'}"
    env = clean_env(home)
    try:
        tmux.start(f"cd {home} && exec {sys.executable} -m qqtui --home {home} demo", env)
        tmux.wait_for(
            lambda s: "1 waiting" in s and "WAIT" in s and "needs you" in s,
            "the review run to show as waiting",
            timeout=60,
        )
        [review] = [r for r in Snapshot(db_url).runs() if r.agent == "review"]
        assert review.tty and review.waiting and review.status is Status.RUNNING
        # Only the waiting run in the table, so it is the one selected.
        tmux.keys("/")
        tmux.keys("waiting", literal=True)
        tmux.wait_for(lambda s: "runs  1 of 8" in s, "the filtered table")
        tmux.keys("Enter")
        tmux.wait_for(lambda s: f"output · run {review.id} · review" in s, "the review run's pane")
        tmux.keys("a")
        screen = tmux.wait_for(
            lambda s: "Apply this change? [y/n]" in s and f"attached to run {review.id}" in s,
            "the attached terminal",
        )
        assert "review agent" in screen and "+        run = self.pending.popleft()" in screen
        tmux.keys("y")
        tmux.wait_for(lambda s: f"run {review.id} ended (exit 0)" in s, "the run's end")
        run = Snapshot(db_url).run(review.id)
        assert run is not None and run.status is Status.SUCCEEDED and not run.waiting
        tmux.keys("x")  # any key detaches once the run has ended
        tmux.wait_for(lambda s: "Launch" in s and "Attach" in s, "the main screen again")
        tmux.keys("q")
        tmux.wait_for(lambda s: "Launch" not in s, "the app to quit", timeout=10)
    finally:
        _stop_workers(home, db_url)


_RANDOM_TMUX_KEYS = list(RANDOM_KEY_NAMES.values())  # tmux's names for them


@pytest.mark.slow
def test_tab_up_down_and_random_keys_leave_the_app_running(tmux: Tmux, tmp_path: Path) -> None:
    """Issue #13: Tab, Up, Down on a finished `seq 1 200` killed the app with
    KeyError(scroll_y) from Textual's animator."""
    import random

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    db_url = f"sqlite:///{home / 'qqtui.db'}"
    env = clean_env(home)
    qqtui = [sys.executable, "-m", "qqtui"]
    try:
        for args in (
            ["add", "--shared-workspace", "--", "seq", "1", "200"],
            ["worker", "--until-idle"],
        ):
            subprocess.run(
                [*qqtui, *args], env=env, cwd=home, check=True, capture_output=True, timeout=60
            )
        assert Snapshot(db_url).run(1).status is Status.SUCCEEDED  # type: ignore[union-attr]
        # If the app dies, the shell says so and the traceback stays on the screen.
        tmux.start(f"cd {home} && {sys.executable} -m qqtui; echo QQTUI-EXITED $?; sleep 600", env)
        tmux.wait_for(
            lambda s: "n Launch" in s and "\n200" in s.replace("│", "\n"), "the app and the output"
        )

        def assert_still_the_app(after: str) -> None:
            time.sleep(1.0)  # the crash came when the Down's animation ended
            screen = tmux.screen()
            assert "QQTUI-EXITED" not in screen and "Traceback" not in screen, f"{after}:\n{screen}"
            # The header's counts: the main screen is showing (the random keys end with Escape).
            assert "1 done" in screen and "0 running" in screen, (
                f"not the app after {after}:\n{screen}"
            )

        tmux.keys("Tab")
        tmux.keys("Up")
        tmux.keys("Down")
        assert_still_the_app("Tab Up Down")
        tmux.keys("Up", "Up", "Up", "Down", "Down", "Down")
        assert_still_the_app("Up x3 Down x3")
        # A one-line scroll lasts 20 ms, about one frame: it crashed only when the frame
        # that brought it to the bottom was its last, so the key's phase against the
        # animator's 60 Hz timer decided. Random sub-frame delays try many phases.
        rng = random.Random(13)
        for _ in range(30):
            tmux.keys("Up")
            time.sleep(0.06 + rng.uniform(0, 0.02))
            tmux.keys("Down")
            time.sleep(0.06 + rng.uniform(0, 0.02))
        assert_still_the_app("Up Down, 30 times")
        tmux.keys("PPage", *["Down"] * 30)
        assert_still_the_app("PageUp then Downs")

        pressed: list[str] = []
        for _ in range(60):
            burst = [rng.choice(_RANDOM_TMUX_KEYS) for _ in range(rng.randint(1, 5))]
            tmux.keys(*burst)
            pressed += burst
            time.sleep(rng.choice([0, 0.05, 0.2]))
        tmux.keys("Escape")
        time.sleep(0.5)
        tmux.keys("Escape")
        assert_still_the_app(" ".join(pressed))
    finally:
        _stop_workers(home, db_url)
