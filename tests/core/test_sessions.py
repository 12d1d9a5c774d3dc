"""Session directories and shared files under real concurrency and real SIGKILLs."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qqtui.core import sessions
from qqtui.core.sessions import SessionError, UnsafePathError

WRITER = r"""
import sys
from pathlib import Path
from qqtui.core.sessions import atomic_write_json
path = Path(sys.argv[1])
i = 0
print("ready", flush=True)
while True:
    i += 1
    # Large, differently sized payloads so a torn write would be visible.
    atomic_write_json(path, {"i": i, "pad": "x" * (50_000 + (i % 7) * 10_000)})
"""


def test_session_id_format() -> None:
    sid = sessions.new_session_id(0)
    assert sessions.SESSION_ID_RE.match(sid)
    assert sessions.validate_session_id(sid) == sid
    with pytest.raises(SessionError, match="invalid session id"):
        sessions.validate_session_id("../../etc")


def test_home_is_created_private_and_tightened(tmp_path: Path) -> None:
    home = tmp_path / "h"
    sessions.ensure_home(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    os.chmod(home, 0o755)
    sessions.ensure_home(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_home_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SessionError, match="cannot create home"):
        sessions.ensure_home(blocker / "home")


def test_sigkill_during_atomic_writes_never_leaves_a_torn_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    for _ in range(25):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.01 + (time.monotonic_ns() % 40) / 1000)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if target.exists():
            data = json.loads(target.read_text())  # raises on a torn file
            assert set(data) == {"i", "pad"} and data["pad"] == "x" * len(data["pad"])
    assert target.exists()


def _append_notes(path: str, worker: int, count: int) -> None:
    for i in range(count):
        sessions.append_text_locked(Path(path), f"worker {worker} line {i} {'z' * 40}\n")


def test_locked_appends_from_ten_processes_lose_nothing(tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_notes, args=(str(notes), w, 200)) for w in range(10)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    lines = notes.read_text().splitlines()
    assert len(lines) == 2000
    assert set(lines) == {f"worker {w} line {i} {'z' * 40}" for w in range(10) for i in range(200)}
    assert (tmp_path / "notes.md.lock").exists()  # lock files are never deleted


def _bump(path: str, count: int) -> None:
    for _ in range(count):
        sessions.update_json(Path(path), lambda d: {"n": (d or {"n": 0})["n"] + 1}, default=None)


def test_update_json_is_a_locked_read_modify_write(tmp_path: Path) -> None:
    counter = tmp_path / "counter.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_bump, args=(str(counter), 100)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert json.loads(counter.read_text()) == {"n": 600}


def _create(home: str, sid: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        out.put(str(sessions.create_session_dir(Path(home), "agent", sid)))
    except Exception as exc:  # report, do not hang the parent
        out.put(f"error: {exc}")


def test_creating_the_same_session_from_many_processes_all_succeed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sid = sessions.new_session_id()
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_create, args=(str(home), sid, out)) for _ in range(8)]
    for p in procs:
        p.start()
    results = {out.get(timeout=30) for _ in procs}
    for p in procs:
        p.join()
    assert results == {str(home / "agent" / "sessions" / sid)}
    assert stat.S_IMODE((home / "agent" / "sessions" / sid).stat().st_mode) == 0o700


def test_symlink_planted_at_a_session_path_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    sid = sessions.new_session_id()
    (home / "agent" / "sessions").mkdir(parents=True)
    (home / "agent" / "sessions" / sid).symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symlink"):
        sessions.create_session_dir(home, "agent", sid)
    assert [p.name for p in victim.iterdir()] == ["keep.txt"]
    assert (victim / "keep.txt").read_text() == "precious"


def test_atomic_write_refuses_a_symlinked_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim.json"
    victim.write_text('{"keep": true}')
    link = tmp_path / "meta.json"
    link.symlink_to(victim)
    with pytest.raises(UnsafePathError):
        sessions.atomic_write_json(link, {"evil": True})
    assert json.loads(victim.read_text()) == {"keep": True}


def test_corrupt_json_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_text('{"messages": [')
    with pytest.raises(SessionError, match="not valid JSON"):
        sessions.read_json(path)


def test_sessions_are_listed_newest_first_and_found_by_id(tmp_path: Path) -> None:
    home = tmp_path / "home"
    old, new = "20250101_000000_00000001", "20260101_000000_00000002"
    sessions.create_session_dir(home, "a", old)
    sessions.create_session_dir(home, "b", new)
    assert [s.session_id for s in sessions.list_sessions(home)] == [new, old]
    assert [s.session_id for s in sessions.list_sessions(home, "a")] == [old]
    assert sessions.find_session(home, new).agent == "b"
    with pytest.raises(SessionError, match="no session"):
        sessions.find_session(home, "20990101_000000_00000003")
