"""How the app is started: Textual's frame rate, and what runs inherit."""

from __future__ import annotations

import os
import subprocess
import sys

from qqtui.tui.perf.interpreter import APP_FPS, FPS_ENV

PROBE = (
    "import os; from qqtui.tui.perf.interpreter import import_app; import_app();"
    " import textual.screen as s; print(round(1 / s.UPDATE_PERIOD), os.environ.get('TEXTUAL_FPS'))"
)


def probe(env_fps: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != FPS_ENV}
    if env_fps is not None:
        env[FPS_ENV] = env_fps
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_the_app_repaints_at_its_rate_without_leaking_the_setting_to_runs() -> None:
    # The app's environment is the worker's and so its runs': the variable is gone again.
    assert probe(None) == f"{APP_FPS} None"


def test_the_users_frame_rate_wins() -> None:
    assert probe("30") == "30 30"


TUNE_PROBE = (
    "import gc, sys; from qqtui.tui.perf.interpreter import SWITCH_INTERVAL_S, tune_interpreter;"
    " before = sys.getswitchinterval(); tune_interpreter();"
    " print(before, sys.getswitchinterval() == SWITCH_INTERVAL_S, gc.get_threshold()[0],"
    " gc.get_freeze_count() > 0)"
)


def test_once_up_the_app_freezes_its_heap_and_shortens_the_thread_switch() -> None:
    # In a child: both settings are process-wide and would leak into other tests.
    result = subprocess.run(
        [sys.executable, "-c", TUNE_PROBE], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["0.005", "True", "10000", "True"]
