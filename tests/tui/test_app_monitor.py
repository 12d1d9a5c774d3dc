"""The headless parts the app polls with: Monitor (diffs and alerts), RowBuilder (row
reuse), the filter language, and the sparkline."""

from __future__ import annotations

from pathlib import Path

from qqtui.config import Settings
from qqtui.core.monitor import Monitor
from qqtui.core.records import Status
from qqtui.core.runspec import RunSpec
from qqtui.core.store import Store
from qqtui.tui.widgets import formatting as fmt
from qqtui.tui.widgets.run_table import RowBuilder, matches_filter

SID = "20260101_120000_0000abcd"


def _add(store: Store, name: str) -> int:
    return store.add_run(RunSpec(argv=["echo", name], cwd="/", name=name), session_id=SID).id


def test_alerts_come_from_changes_between_polls(tui_settings: Settings, tui_store: Store) -> None:
    failing, hanging, lost, fine = (
        _add(tui_store, n) for n in ("failing", "hanging", "lost", "ok")
    )
    monitor = Monitor(Path(tui_settings.home), tui_settings.db_url, scan_processes=False)
    first = monitor.poll()
    assert first.first and first.alerts == ()
    assert first.counts["queued"] == 4 and first.counts["total"] == 4

    claimed = {r.id: r.claim_token or "" for r in tui_store.claim_runs("w", limit=4)}
    tui_store.finish_run(failing, claimed[failing], Status.FAILED, reason="exit 3", exit_code=3)
    tui_store.set_hung(hanging, claimed[hanging], True, "silent")
    tui_store.finish_run(lost, claimed[lost], Status.LOST, reason="worker died")
    tui_store.finish_run(fine, claimed[fine], Status.SUCCEEDED, reason="exit 0", exit_code=0)
    second = monitor.poll()
    assert {(a.run.id, a.kind) for a in second.alerts} == {
        (failing, "failed"),
        (hanging, "hung"),
        (lost, "lost"),
    }
    assert second.counts["hung"] == 1 and second.counts["running"] == 1
    # Nothing changed since: no repeated toasts.
    assert monitor.poll().alerts == ()


def test_unchanged_finished_runs_keep_their_record_and_row(
    tui_settings: Settings, tui_store: Store
) -> None:
    done = _add(tui_store, "done")
    busy = _add(tui_store, "busy")
    waiting = _add(tui_store, "parked")
    tui_store.request_cancel(done)
    tui_store.claim_runs("w", limit=1)  # "busy" runs
    monitor = Monitor(Path(tui_settings.home), tui_settings.db_url, scan_processes=False)
    builder = RowBuilder()
    first = monitor.poll()
    rows1 = builder.build(first.runs, {}, {}, first.now, "")
    second = monitor.poll()
    rows2 = builder.build(second.runs, {}, {}, second.now, "")
    assert second.runs[done] is first.runs[done]
    assert rows2[done] is rows1[done]
    assert second.runs[waiting] is first.runs[waiting], "queued runs change only by transitions"
    assert second.runs[busy] is not first.runs[busy], "running runs are always re-read"
    assert rows2[busy] is not rows1[busy]
    tui_store.retry_run(done)  # a transition bumps the version: re-read
    third = monitor.poll()
    assert third.runs[done].status is Status.QUEUED
    rows3 = builder.build(third.runs, {}, {}, third.now, "parked")
    assert list(rows3) == [waiting]


def test_filter_words_and_statuses(tui_store: Store) -> None:
    run = tui_store.get_run(_add(tui_store, "Nightly Index"))
    assert matches_filter(run, "")
    assert matches_filter(run, "nightly")
    assert matches_filter(run, "queued index")
    assert matches_filter(run, "active")
    assert not matches_filter(run, "running")
    assert not matches_filter(run, "nightly missing")
    assert not matches_filter(run, "hung")


def test_sparkline_scales_to_one_core() -> None:
    assert fmt.sparkline([]) == " " * fmt.SPARK_WIDTH
    assert fmt.sparkline([0.0] * 60) == "▁" * 10
    assert fmt.sparkline([100.0] * 60) == "█" * 10
    line = fmt.sparkline([0.0] * 30 + [100.0] * 30)
    assert line == "▁" * 5 + "█" * 5
    assert fmt.sparkline([250.0]) == "█".rjust(10)


def test_progress_of_running_runs_reaches_their_row(
    tui_settings: Settings, tui_store: Store
) -> None:
    from qqtui.core.intents import run_paths
    from qqtui.core.sessions import atomic_write_json, create_run_dir, create_session_dir

    home = Path(tui_settings.home)
    own, via_session, corrupt, queued = (_add(tui_store, n) for n in ("own", "sess", "bad", "q"))
    claimed = tui_store.claim_runs("w", limit=3)
    assert {r.id for r in claimed} == {own, via_session, corrupt}
    for run in claimed:
        session_path, run_path = run_paths(home, run)
        create_session_dir(home, run.agent, run.session_id)
        create_run_dir(session_path, run.id)
        if run.id == own:
            atomic_write_json(run_path / "progress.json", {"fraction": 0.45, "message": "indexing"})
        elif run.id == corrupt:
            (run_path / "progress.json").write_text('{"fraction": ')  # half-written
    # The session-wide file is the fallback for runs without their own.
    session_path, _ = run_paths(home, claimed[0])
    atomic_write_json(session_path / "progress.json", {"fraction": 2, "message": 7})

    result = Monitor(home, tui_settings.db_url, scan_processes=False).poll()
    assert result.progress[own].fraction == 0.45 and result.progress[own].message == "indexing"
    assert result.progress[via_session].fraction == 1.0  # clamped
    assert result.progress[via_session].message == ""  # not a string: ignored
    assert corrupt not in result.progress and queued not in result.progress

    rows = RowBuilder().build(result.runs, {}, {}, result.now, "", result.progress)
    outcome = rows[own].cells[-2][0]
    assert outcome == f"{fmt.progress_bar(0.45)} indexing" and "45%" in outcome
    assert rows[corrupt].cells[-2][0] == ""
