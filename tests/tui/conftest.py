"""Fixtures for the app tests: a temp home, a real SQLite store, a real `qqtui worker`,
and a helper that waits for a condition while the app keeps running."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.app import App
from textual.pilot import Pilot

from qqtui.config import Settings
from qqtui.core.records import Status
from qqtui.core.snapshot import Snapshot
from qqtui.core.store import Store
from qqtui.tui import perf
from tests.conftest import cli_env, kill_home_processes

# Issue #13's random keys: every key of the brief but q (quit) and the letters that act
# on the run (c cancel, k kill, r resume, R retry, y yes in a confirmation). Pilot's name
# for each key, and tmux's.
RANDOM_KEY_NAMES = {
    "tab": "Tab", "shift+tab": "BTab", "up": "Up", "down": "Down",
    "pageup": "PPage", "pagedown": "NPage", "home": "Home", "end": "End",
    "f": "f", "slash": "/", "escape": "Escape",
    **{letter: letter for letter in "abeghjlmnopstuvwxz"},
}  # fmt: skip


@pytest.fixture
def perf_installed() -> Iterator[None]:
    """qqtui's replacements of Textual code, as `qqtui` installs them, for one test; an
    app built without this runs on stock Textual (they must look the same)."""
    with perf.installed():
        yield


@pytest.fixture
def tui_home(home: Path) -> Path:
    return home


@pytest.fixture
def tui_settings(tui_home: Path) -> Settings:
    return Settings(home=tui_home, db_url=f"sqlite:///{tui_home / 'qqtui.db'}")


@pytest.fixture
def tui_store(store: Store) -> Store:
    return store


# The app tests' names for the shared helpers.
clean_env = cli_env


@pytest.fixture
def live_worker(tui_home: Path, tui_store: Store) -> Iterator[subprocess.Popen[bytes]]:
    """A real `qqtui worker` on the temp home, polling fast; stopped with its runs."""
    err = open(tui_home / "worker.err", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "qqtui", "--home", str(tui_home), "worker", "--poll", "0.1"],
        env=clean_env(tui_home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=err,
    )
    deadline = time.monotonic() + 20
    while not tui_store.workers(live_only=True):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError(f"worker did not start: {(tui_home / 'worker.err').read_text()}")
        time.sleep(0.05)
    yield proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    err.close()
    kill_home_processes(tui_home)


async def wait_until(
    pilot: Pilot[object], condition: Callable[[], object], timeout: float = 20.0, what: str = ""
) -> object:
    """Let the app run until `condition()` is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await pilot.pause(0.05)


async def select_run(pilot: Pilot[object], app: App[object], run_id: int) -> None:
    """Select `run_id` in the runs table once it is shown, as a click would."""
    from qqtui.tui.screens.main import MainScreen
    from qqtui.tui.widgets.run_table import RunTable

    table = app.screen.query_one(RunTable)
    await wait_until(pilot, lambda: run_id in table.run_ids, what=f"run {run_id} in the table")
    table.select_run(run_id)
    screen = app.screen
    assert isinstance(screen, MainScreen)
    await wait_until(pilot, lambda: screen.selected_run and screen.selected_run.id == run_id)


def run_status(db_url: str, run_id: int) -> Status | None:
    run = Snapshot(db_url).run(run_id)
    return run.status if run is not None else None
