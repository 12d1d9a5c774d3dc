"""Names and progress messages from users and runs reach the app's terminal sanitised (#13)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rich.text import Text

from qqtui.config import Settings
from qqtui.core.intents import submit_run
from qqtui.core.runspec import RunSpec
from qqtui.core.store import Store
from qqtui.tui.app import make_app
from qqtui.tui.widgets.run_table import RunTable
from tests.tui.conftest import wait_until

HOSTILE_NAME = "nm\x1b]2;NAMEPWN\x1b\\x\u202e"
HOSTILE_PROGRESS = "ok\x1b]2;PG\x1b\\\x1bkT\x1b\\\x1b[2Jdone"


def _cells(table: RunTable) -> list[str]:
    row = table.get_row_at(0)
    return [cell.plain if isinstance(cell, Text) else str(cell) for cell in row]


@pytest.mark.asyncio
async def test_a_hostile_name_and_progress_are_plain_in_the_table(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    script = (
        "import subprocess, sys, time\n"
        f"subprocess.run([sys.executable, '-m', 'qqtui', 'progress', '0.5', {HOSTILE_PROGRESS!r}],"
        " check=True)\n"
        "time.sleep(60)\n"
    )
    submit_run(
        tui_store,
        tui_settings.home,
        RunSpec(
            [sys.executable, "-c", script],
            name=HOSTILE_NAME,
            cwd=str(tui_settings.home),
            shared_workspace=True,
        ),
    )
    app = make_app(tui_settings, tui_store, start_worker=False, poll_interval=0.2)
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.screen.query_one(RunTable)
        await wait_until(
            pilot, lambda: table.row_count == 1 and any("okdone" in c for c in _cells(table)), 30
        )
        cells = _cells(table)
        assert "nmx" in cells[1]
        for cell in cells:
            assert not any(c in cell for c in "\x1b\x9b\x07\u202e"), repr(cell)
        assert "NAMEPWN" not in "".join(cells) and "PG" not in "".join(cells)
        # A toast that names the run is sanitised on its way in, whoever sends it.
        app.notify(f"run {HOSTILE_NAME} done", title=HOSTILE_NAME)
        await wait_until(pilot, lambda: len(app._notifications) > 0)
        note = list(app._notifications)[-1]
        assert note.message == "run nmx done" and note.title == "nmx"
