"""Agent profiles from config.toml: templates, resume, errors that point at the line; and
the one-time migration of seed 000's single-file history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qqtui.core.profiles import (
    AgentProfile,
    ProfileError,
    load_profiles,
    migrate_all_legacy_histories,
    migrate_legacy_history,
    profile_for,
)
from qqtui.core.records import QqError
from qqtui.core.sessions import list_sessions, read_json

SID = "20261122_101500_0123abcd"

GOOD = """\
# the qq agent of seed 000
[agents.qq]
description = "qq coding agent"
command = ["qq", "--session", "{session_id}", "-m", "{args}"]
resume = ["qq", "--session", "{session_id}", "{args}"]
timeout = 3600
hung_after = 600.5
env = { QQ_MODEL = "small", PYTHONUNBUFFERED = "1" }

[agents.prefix]
command = ["python", "-u"]

[agents.plain]
timeout = 10

[ui]
bell = true  # another module's table: not ours to judge
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    return path


def write_config(home: Path, text: str) -> Path:
    path = home / "config.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_load_profiles_reads_every_agent(home: Path) -> None:
    write_config(home, GOOD)
    profiles = load_profiles(home)
    assert sorted(profiles) == ["plain", "prefix", "qq"]
    qq = profiles["qq"]
    assert qq.timeout == 3600.0 and qq.hung_after == 600.5
    assert qq.env == {"QQ_MODEL": "small", "PYTHONUNBUFFERED": "1"}
    assert qq.description == "qq coding agent" and qq.configured
    assert profiles["plain"].command is None


def test_missing_config_means_no_profiles_and_pass_through(home: Path) -> None:
    assert load_profiles(home) == {}
    profile = profile_for(home, "anything")
    assert not profile.configured
    assert profile.build_command(["echo", "hi"], home=home, session_id=SID) == ["echo", "hi"]
    with pytest.raises(QqError, match="no command"):
        profile.build_command([], home=home, session_id=SID)


def test_command_template_splices_args_and_fills_placeholders(home: Path) -> None:
    write_config(home, GOOD)
    qq = profile_for(home, "qq")
    argv = qq.build_command(["fix the flaky test", "--fast"], home=home, session_id=SID)
    assert argv == ["qq", "--session", SID, "-m", "fix the flaky test", "--fast"]
    assert qq.build_command([], home=home, session_id=SID) == ["qq", "--session", SID, "-m"]


def test_template_without_args_element_appends_args(home: Path) -> None:
    write_config(home, GOOD)
    argv = profile_for(home, "prefix").build_command(["x.py", "a b"], home=home, session_id=SID)
    assert argv == ["python", "-u", "x.py", "a b"]


def test_all_placeholders_and_literal_braces() -> None:
    profile = AgentProfile(
        name="bot",
        command=("bot", "--dir={session_dir}", "--home", "{home}", "{agent}:{session_id}", "{{x}}"),
    )
    home = Path("/h")
    argv = profile.build_command(["{session_id}"], home=home, session_id=SID)
    assert argv == [
        "bot",
        f"--dir=/h/bot/sessions/{SID}",
        "--home",
        "/h",
        f"bot:{SID}",
        "{x}",
        "{session_id}",  # user ARGS are never expanded
    ]


def test_resume_template(home: Path) -> None:
    write_config(home, GOOD)
    qq = profile_for(home, "qq")
    assert qq.build_resume(SID, ["qq", "-m", "old"], home=home) == ["qq", "--session", SID]
    assert qq.build_resume(SID, None, home=home, args=["-m", "go on"]) == [
        "qq",
        "--session",
        SID,
        "-m",
        "go on",
    ]


def test_resume_without_template_reruns_last_argv_or_uses_command(home: Path) -> None:
    write_config(home, GOOD)
    prefix = profile_for(home, "prefix")
    assert prefix.build_resume(SID, ["python", "-u", "a.py"], home=home) == [
        "python",
        "-u",
        "a.py",
    ]
    assert prefix.build_resume(SID, ["old"], home=home, args=["b.py"]) == ["python", "-u", "b.py"]
    with pytest.raises(QqError, match="no previous command"):
        prefix.build_resume(SID, [], home=home)


def _error(home: Path, text: str) -> ProfileError:
    path = write_config(home, text)
    with pytest.raises(ProfileError) as info:
        load_profiles(home)
    err = info.value
    assert str(path) in str(err)
    assert isinstance(err, QqError)
    return err


def test_syntax_error_names_file_and_line(home: Path) -> None:
    err = _error(
        home,
        """\
        [agents.qq]
        command = ["qq"]
        timeout = = 3
        """,
    )
    assert err.line == 3
    assert str(err).startswith(f"{home / 'config.toml'}:3: invalid TOML")


def test_unknown_key_names_key_and_line(home: Path) -> None:
    err = _error(
        home,
        """\
        [agents.other]
        timeout = 5

        [agents.qq]
        command = ["qq"]
        # a comment
        timout = 30
        """,
    )
    assert (err.line, err.key) == (7, "agents.qq.timout")
    assert "unknown key" in str(err) and ":7: agents.qq.timout:" in str(err)


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        ('timeout = "ten"', "timeout", "positive number"),
        ("timeout = true", "timeout", "positive number"),
        ("hung_after = -1", "hung_after", "positive number"),
        ('command = "qq -m"', "command", "list of strings"),
        ("command = []", "command", "non-empty"),
        ('command = ["qq", 3]', "command", "list of strings"),
        ('command = ["qq", "-m={args}"]', "command", "whole element"),
        ('resume = ["qq", "{run_id}"]', "resume", "unknown placeholder"),
        ('resume = ["qq", "{session_id!r}"]', "resume", "unknown placeholder"),
        ('resume = ["qq", "{"]', "resume", "bad braces"),
        ('env = "X=1"', "env", "table"),
        ("env = { X = 1 }", "env", "must be a string"),
        ('env = { QQ_SESSION_ID = "x" }', "env", "set by qqtui"),
        ("description = 3", "description", "must be a string"),
    ],
)
def test_wrong_type_names_key_and_line(home: Path, body: str, key: str, problem: str) -> None:
    # The bad key sits on line 4, below a header, a comment and one good key.
    good = "timeout = 5" if key != "timeout" else "hung_after = 5"
    err = _error(home, f"[agents.qq]\n# settings\n{good}\n{body}\n")
    assert err.key == f"agents.qq.{key}"
    assert err.line == 4
    assert problem in str(err)
    assert f"config.toml:4: agents.qq.{key}: " in str(err)


def test_errors_in_dotted_and_inline_forms_find_the_line(home: Path) -> None:
    err = _error(
        home,
        """\
        [agents]
        qq.command = ["qq"]
        qq.timeout = "soon"
        """,
    )
    assert (err.key, err.line) == ("agents.qq.timeout", 3)
    err = _error(
        home,
        """\
        [agents]
        a = { timeout = 1 }
        bot = { timeout = "x" }
        """,
    )
    assert (err.key, err.line) == ("agents.bot.timeout", 3)


def test_error_in_an_env_sub_table_points_at_its_header(home: Path) -> None:
    err = _error(
        home,
        """\
        [agents.qq]
        command = ["qq"]

        [agents.qq.env]
        OK = "1"
        BAD = 2
        """,
    )
    assert (err.key, err.line) == ("agents.qq.env", 6)
    assert "BAD must be a string" in str(err)
    err = _error(
        home,
        """\
        [agents.qq]
        env.OK = "1"
        env.QQ_RUN_ID = "9"
        """,
    )
    assert (err.key, err.line) == ("agents.qq.env", 3)
    assert "set by qqtui" in str(err)
    err = _error(home, '[agents]\nqq.env.OK = "1"\nqq.env.BAD = 2\n')
    assert (err.key, err.line) == ("agents.qq.env", 3)


def test_agents_must_be_tables(home: Path) -> None:
    err = _error(home, 'title = "x"\nagents = 3\n')
    assert err.line == 2 and "table" in str(err)
    err = _error(home, "[agents]\nqq = 3\n")
    assert (err.key, err.line) == ("agents.qq", 2)
    err = _error(home, '[agents."bad name"]\ntimeout = 1\n')
    assert err.line == 1 and "agent names" in str(err)


def test_not_utf8_names_line(home: Path) -> None:
    (home / "config.toml").write_bytes(b'[agents.qq]\ncommand = ["q\xff"]\n')
    with pytest.raises(ProfileError, match=r"config\.toml:2: not valid UTF-8"):
        load_profiles(home)


# -- migration of seed 000's single-file layout ------------------------------------------


def _legacy(home: Path, agent: str = "qq") -> Path:
    agent_dir = home / agent
    agent_dir.mkdir()
    legacy = agent_dir / "history.json"
    legacy.write_text(json.dumps({"messages": [{"role": "user", "content": "old"}]}))
    (agent_dir / "files_state.json").write_text('{"cwd": "/src"}')
    return legacy


def test_migration_copies_once_and_leaves_the_original(home: Path) -> None:
    legacy = _legacy(home)
    before = legacy.read_bytes(), legacy.stat().st_mtime_ns
    path = migrate_legacy_history(home, "qq")
    assert path is not None and path.parent == home / "qq" / "sessions"
    assert (path / "history.json").read_bytes() == before[0]
    assert (path / "files_state.json").read_text() == '{"cwd": "/src"}'
    meta = read_json(path / "meta.json")
    assert meta["origin"] == "migrated" and meta["agent"] == "qq"
    assert (legacy.read_bytes(), legacy.stat().st_mtime_ns) == before
    marker = read_json(home / "qq" / ".migrated.json")
    assert marker["complete"] and marker["session_id"] == path.name
    assert migrate_legacy_history(home, "qq") is None
    assert [s.session_id for s in list_sessions(home, "qq")] == [path.name]


def test_migration_nothing_to_do(home: Path) -> None:
    assert migrate_legacy_history(home, "qq") is None
    (home / "qq").mkdir()
    assert migrate_legacy_history(home, "qq") is None
    assert migrate_all_legacy_histories(home) == []


def test_interrupted_migration_finishes_into_the_same_session(home: Path) -> None:
    _legacy(home)
    marker = home / "qq" / ".migrated.json"
    sid = "20260101_000000_deadbeef"
    marker.write_text(json.dumps({"session_id": sid, "complete": False}))
    path = migrate_legacy_history(home, "qq")
    assert path is not None and path.name == sid
    assert [s.session_id for s in list_sessions(home, "qq")] == [sid]


def test_parallel_migrations_make_one_session(home: Path) -> None:
    _legacy(home)
    _legacy(home, "other")
    code = (
        "import sys; from pathlib import Path;"
        "from qqtui.core.profiles import migrate_all_legacy_histories as m;"
        "print(len(m(Path(sys.argv[1]))))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(home)], stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    counts = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(counts) == 2  # one migration per agent, whoever won the lock
    assert len(list_sessions(home, "qq")) == 1
    assert len(list_sessions(home, "other")) == 1


def test_legacy_symlink_is_not_followed(home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    (home / "qq").mkdir()
    os.symlink(secret, home / "qq" / "history.json")
    assert migrate_legacy_history(home, "qq") is None
