"""The agent kit under real concurrency: separate processes, real files, SIGKILL mid-write."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from qqtui import agent
from qqtui.agent import AgentKitError, InvalidNameError, Session
from qqtui.core.sessions import SessionError, create_run_dir, create_session_dir, new_session_id


@pytest.fixture
def session(tmp_path: Path) -> Session:
    home = tmp_path / "home"
    sid = new_session_id()
    path = create_session_dir(home, "qq", sid)
    create_run_dir(path, 7)
    return Session(path, run_id="7", heartbeat_file=path / "runs" / "7" / "heartbeat", home=home)


def _env(session: Session) -> dict[str, str]:
    """The environment contract a run gets from qqtui."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QQ_")}
    env.update(
        QQ_HOME=str(session.home),
        QQ_SESSION_ID=session.session_id,
        QQ_SESSION_DIR=str(session.path),
        QQ_RUN_ID=str(session.run_id),
        QQ_HEARTBEAT_FILE=str(session.heartbeat_file),
    )
    return env


@pytest.fixture
def session_in_env(session: Session, monkeypatch: pytest.MonkeyPatch) -> Session:
    """This test process as the session's run: its QQ_ variables set, nothing cached."""
    for key, value in _env(session).items():
        if key.startswith("QQ_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setattr(agent, "_current", None)
    return session


def _run_workers(code: str, env: dict[str, str], count: int) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(i)], env=env)
        for i in range(count)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0


def test_ten_processes_update_json_lose_no_increment(session: Session) -> None:
    code = """
        from qqtui import agent
        for _ in range(500):
            agent.update_json("counter.json", lambda d: {"n": d["n"] + 1}, {"n": 0})
    """
    _run_workers(code, _env(session), 10)
    assert session.read_json("counter.json") == {"n": 5000}


def test_ten_processes_append_note_lose_and_tear_no_line(session: Session) -> None:
    code = """
        import sys
        from qqtui import agent
        me = sys.argv[1]
        for j in range(200):
            # The padding makes a torn or interleaved write visible as a malformed line.
            agent.append_note("notes.md", f"w{me} n{j:03d} " + "x" * 40)
    """
    _run_workers(code, _env(session), 10)
    lines = session.file("notes.md").read_text().splitlines()
    expected = {f"w{i} n{j:03d} " + "x" * 40 for i in range(10) for j in range(200)}
    assert len(lines) == 2000
    assert set(lines) == expected
    # Each writer's own notes stay in the order it wrote them.
    for i in range(10):
        mine = [line for line in lines if line.startswith(f"w{i} ")]
        assert mine == sorted(mine)


def test_append_note_to_shared_path_outside_session(session: Session, tmp_path: Path) -> None:
    shared = tmp_path / "memory" / "notes.md"
    shared.parent.mkdir()
    shared.write_text("no trailing newline")
    session.append_note(shared, "first")
    session.append_note(shared, "second\n")
    assert shared.read_text() == "no trailing newline\nfirst\nsecond\n"


def _child_writes_forever(session: Session, blob_len: int) -> None:
    # Runs in a forked child until it is SIGKILLed; never returns into pytest.
    try:
        k = 0
        while True:
            k += 1
            session.write_json("state.json", {"k": k, "blob": "x" * blob_len})
            n = len(session.history())
            session.append_history({"role": "assistant", "seq": n, "pad": "y" * 2000})
    finally:
        os._exit(1)


def test_sigkill_during_writes_never_leaves_a_torn_file(session: Session) -> None:
    blob_len = 300_000  # big enough that a kill often lands inside a write
    rng = random.Random(1234)
    saw_state = 0
    for _ in range(100):
        pid = os.fork()
        if pid == 0:
            _child_writes_forever(session, blob_len)
        time.sleep(rng.uniform(0.0, 0.03))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

        state = session.read_json("state.json")  # raises SessionError if torn
        if state is not None:
            saw_state += 1
            assert len(state["blob"]) == blob_len
        messages = session.history()
        # Every surviving history is a gap-free prefix: no append was lost or torn.
        assert [m["seq"] for m in messages] == list(range(len(messages)))
    assert saw_state > 50
    assert len(session.history()) > 0


def test_heartbeat_rate_limit_touches_at_least_every_second(tmp_path: Path) -> None:
    hb = tmp_path / "heartbeat"
    now = [0.0]
    session = Session(tmp_path, heartbeat_file=hb, clock=lambda: now[0])

    assert session.heartbeat() is True
    assert hb.exists()  # the first beat creates the file
    touched_at = [0.0]
    os.utime(hb, (0, 0))
    for _ in range(80):  # 10 s of fake time in exact binary steps
        now[0] += 0.125
        returned = session.heartbeat()
        changed = hb.stat().st_mtime != 0
        assert returned == changed  # what it reports is what happened to the file
        if changed:
            touched_at.append(now[0])
            os.utime(hb, (0, 0))
    gaps = [b - a for a, b in itertools.pairwise(touched_at)]
    assert max(gaps) <= 1.0
    assert len(touched_at) == 21  # every 0.5 s, not on every call


def test_heartbeat_hot_loop_with_frozen_clock_touches_once(tmp_path: Path) -> None:
    hb = tmp_path / "heartbeat"
    session = Session(tmp_path, heartbeat_file=hb, clock=lambda: 42.0)
    assert session.heartbeat() is True
    os.utime(hb, (0, 0))
    touches = sum(session.heartbeat() for _ in range(100_000))
    assert touches == 0
    assert hb.stat().st_mtime == 0


def test_heartbeat_without_a_heartbeat_file_is_a_no_op(tmp_path: Path) -> None:
    session = Session(tmp_path)
    assert session.heartbeat() is False
    assert list(tmp_path.iterdir()) == []


def test_heartbeat_refuses_to_create_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    hb = tmp_path / "heartbeat"
    hb.symlink_to(target)
    session = Session(tmp_path, heartbeat_file=hb)
    session.heartbeat()  # touches the link itself, never creates the target
    assert not target.exists()


def test_heartbeat_failure_warns_once_and_does_not_raise(tmp_path: Path) -> None:
    now = [0.0]
    hb = tmp_path / "gone" / "heartbeat"
    session = Session(tmp_path, heartbeat_file=hb, clock=lambda: now[0])
    with pytest.warns(RuntimeWarning, match="heartbeat failed"):
        assert session.heartbeat() is False
    assert isinstance(session.heartbeat_error, FileNotFoundError)
    now[0] += 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise here
        assert session.heartbeat() is False
    hb.parent.mkdir()
    now[0] += 1
    assert session.heartbeat() is True and hb.exists()
    assert session.heartbeat_error is None


@pytest.mark.parametrize(
    "name", ["..", ".", "", "../x.json", "/etc/passwd", "a/b.json", "a\\b.json", "x\0y"]
)
def test_names_must_stay_inside_the_session(session: Session, name: str) -> None:
    with pytest.raises(InvalidNameError, match="invalid session file name"):
        session.write_json(name, {})
    with pytest.raises(InvalidNameError):
        session.read_json(name)


def test_meta_json_is_readable_but_not_writable(session: Session) -> None:
    with pytest.raises(InvalidNameError, match="belongs to qqtui"):
        session.write_json("meta.json", {})
    with pytest.raises(InvalidNameError, match="belongs to qqtui"):
        session.update_json("meta.json", lambda d: d)


def test_append_history_refuses_to_clobber_a_foreign_document(session: Session) -> None:
    session.write_json("history.json", ["not", "a", "history"])
    with pytest.raises(AgentKitError, match="messages"):
        session.append_history({"role": "user", "content": "hi"})
    assert session.read_json("history.json") == ["not", "a", "history"]


def test_append_history_keeps_other_keys(session: Session) -> None:
    session.write_json("history.json", {"model": "m1", "messages": []})
    assert session.append_history({"role": "user", "content": "hi"}) == 1
    assert session.append_history({"role": "assistant", "content": "hello"}) == 2
    doc = session.read_json("history.json")
    assert doc["model"] == "m1"
    assert [m["role"] for m in doc["messages"]] == ["user", "assistant"]


def test_corrupt_json_gives_a_clear_error(session: Session) -> None:
    session.file("state.json").write_text('{"half": ')
    with pytest.raises(SessionError, match=r"state\.json is not valid JSON"):
        session.read_json("state.json")


def test_progress_goes_to_the_run_dir_and_is_validated(session: Session, tmp_path: Path) -> None:
    session.progress(0.25, "indexing")
    doc = json.loads((session.path / "runs" / "7" / "progress.json").read_text())
    assert doc["fraction"] == 0.25 and doc["message"] == "indexing"
    assert abs(doc["at"] - time.time()) < 60
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(AgentKitError, match="between 0 and 1"):
            session.progress(bad)

    no_run = Session(tmp_path / "home" / "qq" / "sessions" / session.session_id)
    no_run.progress(1, "done")
    assert json.loads((session.path / "progress.json").read_text())["fraction"] == 1.0


def test_locked_excludes_another_process(session: Session) -> None:
    code = f"""
        from qqtui.agent import Session
        from qqtui.core.sessions import SessionError
        try:
            with Session({str(session.path)!r}).locked("shared.txt", timeout=0.2):
                print("got it")
        except SessionError as exc:
            print("refused:", exc)
    """
    with session.locked("shared.txt") as path:
        assert path == session.path / "shared.txt"
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    assert out.startswith("refused: timed out after 0.2s waiting for the lock on")


_REPORT = """
    import json, os, subprocess, sys
    from qqtui import agent
    s = agent.Session.current()
    assert agent.Session.current() is s
    agent.append_history({"role": "user", "content": "hello"})
    agent.progress(0.5, "half")
    agent.heartbeat()
    child = subprocess.run(
        [sys.executable, "-c", "from qqtui import agent; print(agent.Session.current().path)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    print(json.dumps({"path": str(s.path), "id": s.session_id, "agent": s.agent,
                      "run": s.run_id, "progress": str(s.progress_file), "child": child}))
"""


def _report(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_REPORT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_current_session_from_the_qqtui_environment(session: Session) -> None:
    got = _report(_env(session))
    assert got["path"] == str(session.path)
    assert got["id"] == session.session_id
    assert got["agent"] == "qq"
    assert got["run"] == "7"
    assert got["child"] == str(session.path)
    assert got["progress"] == str(session.path / "runs" / "7" / "progress.json")
    assert session.history() == [{"role": "user", "content": "hello"}]
    assert session.heartbeat_file is not None and session.heartbeat_file.exists()


def test_current_session_outside_qqtui_creates_one_under_home(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QQ_")}
    env.update(QQ_HOME=str(tmp_path / "home"), QQ_AGENT="solo")
    got = _report(env)
    path = Path(got["path"])
    assert path.parent == tmp_path / "home" / "solo" / "sessions"
    assert got["agent"] == "solo" and got["run"] is None
    assert got["child"] == got["path"]  # a child process joins the same session
    meta = json.loads((path / "meta.json").read_text())
    assert meta["session_id"] == got["id"] and meta["agent"] == "solo"
    assert json.loads((path / "history.json").read_text())["messages"][0]["content"] == "hello"
    assert (path / "progress.json").exists()
    assert not (path / "heartbeat").exists()  # nobody watches: no heartbeat file
    # A second standalone program starts its own session.
    assert _report(env)["path"] != got["path"]


def test_agent_argument_does_not_rename_a_qqtui_session(session_in_env: Session) -> None:
    first = Session.current(agent="other")
    assert first.agent == "qq" and first.path == session_in_env.path
    assert Session.current(agent="other") is first  # cached: the rate limit holds


def test_current_session_from_an_id_alone_finds_it(session: Session) -> None:
    env = _env(session)
    del env["QQ_SESSION_DIR"], env["QQ_HEARTBEAT_FILE"]
    got = _report(env)
    assert got["path"] == str(session.path)


def test_importing_the_kit_stays_light() -> None:
    code = (
        "import sys, qqtui.agent; "
        "print(sorted(m for m in ('textual', 'rich', 'sqlalchemy', 'sqlmodel', 'filelock', "
        "'qqtui.core.sessions') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.usefixtures("session_in_env")
def test_module_functions_use_the_cached_session() -> None:
    agent.write_json("a.json", {"x": 1})
    assert agent.read_json("a.json") == {"x": 1}
    assert agent.update_json("a.json", lambda d: {"x": d["x"] + 1}) == {"x": 2}
    assert agent.heartbeat() is True
    assert agent.heartbeat() is False  # rate-limited: same cached session
    assert agent.current_session() is agent.Session.current()


def test_from_environ_without_create_refuses_to_invent_a_session(
    session: Session, tmp_path: Path
) -> None:
    env = {"QQ_HOME": str(tmp_path / "elsewhere")}
    with pytest.raises(AgentKitError, match="not inside a qqtui run"):
        Session.from_environ(env, create=False)
    assert not (tmp_path / "elsewhere").exists()
    env = {"QQ_HOME": str(session.home), "QQ_SESSION_ID": "20260101_000000_00000000"}
    with pytest.raises(SessionError, match="no session"):
        Session.from_environ(env, create=False)
    found = Session.from_environ(_env(session), create=False)
    assert found.path == session.path and found.heartbeat_file == session.heartbeat_file


def test_from_environ_with_a_mapping_leaves_os_environ_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QQ_SESSION_ID", raising=False)
    monkeypatch.delenv("QQ_SESSION_DIR", raising=False)
    made = Session.from_environ({"QQ_HOME": str(tmp_path / "h")}, agent="x")
    assert made.path.parent == tmp_path / "h" / "x" / "sessions"
    assert "QQ_SESSION_ID" not in os.environ and "QQ_SESSION_DIR" not in os.environ


def test_mismatched_environment_is_a_clear_error(session: Session) -> None:
    env = _env(session)
    env["QQ_SESSION_ID"] = "20260101_000000_00000000"
    with pytest.raises(AgentKitError, match="does not match"):
        Session.from_environ(env)
    env = _env(session)
    env["QQ_SESSION_DIR"] = str(session.path / "missing")
    with pytest.raises(AgentKitError, match="is not a directory"):
        Session.from_environ(env)
