"""The details pane's fields, rendered as a person reads them."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from qqtui.config import Settings
from qqtui.core.leases import LeaseSet
from qqtui.core.records import Worktree
from qqtui.core.runspec import RunSpec
from qqtui.core.store import Store
from qqtui.tui.widgets.details import details_table

SID = "20260101_120000_0000abcd"


def render(table: object) -> str:
    console = Console(width=160, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_details_show_isolation_worktree_and_locks(
    tui_settings: Settings, tui_store: Store
) -> None:
    isolated = tui_store.add_run(
        RunSpec(argv=["qq", "-m", "refactor"], cwd="/srv/ws/7", keep_worktree=True),
        session_id=SID,
        leases=LeaseSet(workspace="/srv/ws/7", locks=frozenset({"db", "[bold]x"})),
        worktree=Worktree("/srv/ws/7", "/src/app", "qqtui/1"),
    )
    text = render(details_table(isolated, Path(tui_settings.home), isolated.created_at))
    lines = {
        line.split()[0]: line.split(None, 1)[1].strip()
        for line in text.splitlines()
        if line.strip()
    }
    assert lines["Workspace"] == "/srv/ws/7"
    assert lines["Locks"] == "[bold]x, db"  # as written, never read as markup
    assert lines["Worktree"] == "/srv/ws/7  (kept on success)"
    assert lines["Branch"] == "qqtui/1 of /src/app"
    assert lines["Command"] == "qq -m refactor"

    shared = tui_store.add_run(RunSpec(argv=["true"], cwd="/tmp"), session_id=SID)
    text = render(details_table(shared, Path(tui_settings.home), shared.created_at))
    lines = {
        line.split()[0]: line.split(None, 1)[1].strip()
        for line in text.splitlines()
        if line.strip()
    }
    assert lines["Workspace"] == "shared with other runs" and lines["Worktree"] == "-"
