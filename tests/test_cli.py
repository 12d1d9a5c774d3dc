"""The `qqtui` command line as scripts use it: output shapes and every error path."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from qqtui.core.snapshot import Snapshot

from .conftest import Workers, wait_for_status

LS_FIELDS = {
    "id",
    "name",
    "agent",
    "status",
    "hung",
    "session_id",
    "pid",
    "exit_code",
    "reason",
    "attempt",
    "host",
    "created_at",
    "started_at",
    "finished_at",
    "activity_at",
}


def one_error_line(proc) -> str:  # type: ignore[no-untyped-def]
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("qqtui: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "999"], "no run with id 999"),
        (["show", "abc"], "invalid run id 'abc'"),
        (["logs", "0"], "invalid run id '0'"),
        (["cancel", "42"], "no run with id 42"),
        (["kill", "42"], "no run with id 42"),
        (["retry", "42"], "no run with id 42"),
        (["add", "--timeout", "abc", "--", "true"], "'abc' is not a number of seconds"),
        (["add"], "empty command"),
        (["add", "--"], "empty command"),
        (
            ["add", "--cwd", "/definitely/not/here", "--", "true"],
            "does not exist or is not a directory",
        ),
        (["add", "--timeout", "-1", "--", "true"], "must be a positive, finite number of seconds"),
        (["add", "--timeout", "inf", "--", "true"], "must be a positive, finite number of seconds"),
        (["add", "--timeout", "1e400", "--", "true"], "finite number of seconds, not '1e400'"),
        (["add", "--hung-after", "nan", "--", "true"], "finite number of seconds, not 'nan'"),
        (["add", "--retries", "99999999999999999999", "--", "true"], "is not in the range"),
        (["add", "--paths", "../**", "--", "true"], "stays inside it"),
        (["add", "--paths", "/etc/*", "--", "true"], "stays inside it"),
        (["show", "99999999999999999999999"], "no run with id 99999999999999999999999"),
        (["cancel", "99999999999999999999999"], "no run with id 99999999999999999999999"),
        (["kill", "99999999999999999999999"], "no run with id 99999999999999999999999"),
        (["logs", "99999999999999999999999"], "no run with id 99999999999999999999999"),
        (["retry", "99999999999999999999999"], "no run with id 99999999999999999999999"),
        (["cancel", "--grace", "-3", "1"], "must be 0 or a positive, finite number"),
        (["add", "--env", "NOEQUALS", "--", "true"], "expected KEY=VALUE"),
        (["add", "--env", "QQ_RUN_ID=3", "--", "true"], "cannot be overridden"),
        (["add", "--agent", "../evil", "--", "true"], "invalid agent name"),
        (["add", "--session", "nope", "--", "true"], "invalid session id"),
        (["ls", "--status", "bogus"], "unknown status 'bogus'"),
        (["resume", "20990101_000000_deadbeef"], "no session 20990101_000000_deadbeef"),
        (["worker", "-j", "0"], "0 is not in the range"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(qq, home: Path, args, message) -> None:  # type: ignore[no-untyped-def]
    proc = qq(*args)
    line = one_error_line(proc)
    assert message in line
    # One exit code for bad usage (a value no run could take), documented in the README.
    if args[:1] == ["add"] and args[1:2] in (["--timeout"], ["--hung-after"], ["--retries"]):
        assert proc.returncode == 2, line
    assert not any(home.glob("*/sessions/*")), "a session directory was half-created"
    assert qq("ls", "--json", check=True).stdout.strip() in ("[]", "")


def test_unwritable_home_is_one_clear_line(tmp_path: Path) -> None:
    import subprocess

    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "qqtui", "--home", str(blocker / "home"), "add", "--", "true"],
        capture_output=True,
        text=True,
    )
    assert "cannot create home" in one_error_line(proc)


def test_corrupt_database_is_one_clear_line_and_left_untouched(qq, home: Path) -> None:  # type: ignore[no-untyped-def]
    db = home / "qqtui.db"
    junk = b"not a database at all " * 200
    db.write_bytes(junk)
    for args in (["ls"], ["add", "--", "true"], ["show", "1"]):
        assert "not a qqtui database or is corrupt" in one_error_line(qq(*args))
    assert db.read_bytes() == junk


def test_add_ls_show_json_contract(qq, home: Path) -> None:  # type: ignore[no-untyped-def]
    added = json.loads(
        qq(
            "add",
            "--json",
            "--name",
            "n1",
            "--agent",
            "bot",
            "--timeout",
            "5",
            "--hung-after",
            "7",
            "--retries",
            "2",
            "--env",
            "A=b",
            "--",
            "echo",
            "x y",
            check=True,
        ).stdout
    )
    assert added["status"] == "queued" and added["argv"] == ["echo", "x y"]
    assert added["timeout_s"] == 5 and added["hung_after_s"] == 7 and added["max_retries"] == 2
    plain = qq("add", "--", "true", check=True).stdout.strip()
    assert plain.isdigit() and int(plain) == added["id"] + 1
    runs = json.loads(qq("ls", "--json", check=True).stdout)
    assert [r["id"] for r in runs] == [added["id"], int(plain)]
    assert set(runs[0]) >= LS_FIELDS and "claim_token" not in runs[0]
    assert json.loads(qq("ls", "--json", "--status", "running", check=True).stdout) == []
    shown = json.loads(qq("show", str(added["id"]), "--json", check=True).stdout)
    assert shown["events"][0]["to_status"] == "queued"
    assert shown["session_dir"] == str(home / "bot" / "sessions" / added["session_id"])
    text = qq("ls", check=True).stdout
    assert "n1" in text and "queued" in text
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_logs_tail_follow_resume_and_sessions(
    qq, home: Path, db_url: str, workers: Workers
) -> None:  # type: ignore[no-untyped-def]
    run_id = int(
        qq("add", "--", "sh", "-c", "for i in 1 2 3 4 5; do echo line $i; done", check=True).stdout
    )
    workers.start()
    run = wait_for_status(db_url, run_id, {"succeeded"})
    assert qq("logs", str(run_id), check=True).stdout == "".join(f"line {i}\n" for i in range(1, 6))
    assert qq("logs", str(run_id), "--tail", "2", check=True).stdout == "line 4\nline 5\n"
    assert qq("logs", str(run_id), "--tail", "0", check=True).stdout == ""
    follow = int(qq("add", "--", "sh", "-c", "echo a; sleep 0.5; echo b", check=True).stdout)
    assert qq("logs", str(follow), "--follow", timeout=30, check=True).stdout == "a\nb\n"
    resumed = int(qq("resume", run.session_id, check=True).stdout)
    again = wait_for_status(db_url, resumed, {"succeeded"})
    assert again.session_id == run.session_id and again.argv == run.argv
    other = int(qq("resume", run.session_id, "--", "echo", "other", check=True).stdout)
    assert wait_for_status(db_url, other, {"succeeded"}).argv == ("echo", "other")
    sessions = json.loads(qq("sessions", "--json", check=True).stdout)
    mine = next(s for s in sessions if s["session_id"] == run.session_id)
    assert mine["runs"] == 3 and mine["last_status"] == "succeeded" and mine["size_bytes"] > 0


def test_cancel_kill_retry_through_the_cli(qq, db_url: str, workers: Workers) -> None:  # type: ignore[no-untyped-def]
    queued = int(qq("add", "--", "sleep", "30", check=True).stdout)
    assert "cancelled before it started" in qq("cancel", str(queued), check=True).stdout
    assert "nothing to cancel" in one_error_line(qq("cancel", str(queued)))
    assert "queued again (attempt 2)" in qq("retry", str(queued), check=True).stdout
    workers.start()
    wait_for_status(db_url, queued, {"running"})
    assert "only finished runs can be retried" in one_error_line(qq("retry", str(queued)))
    assert "kill requested" in qq("kill", str(queued), check=True).stdout
    run = wait_for_status(db_url, queued, {"cancelled"})
    assert run.attempt == 2 and run.reason == "killed by user (killed by SIGKILL)"


def test_ls_reads_without_importing_sqlalchemy(home: Path, qq) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    qq("add", "--", "true", check=True)
    code = (
        "import sys; from qqtui.cli import main\n"
        "try:\n    main(['ls', '--json'])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('sqlalchemy', 'sqlmodel', 'psutil', 'textual') if m in sys.modules]\n"
        "print('HEAVY', bad, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "QQ_HOME": str(home)},
    )
    assert "HEAVY []" in proc.stderr, proc.stderr
    assert len(json.loads(proc.stdout)) == 1
    assert Snapshot(f"sqlite:///{home / 'qqtui.db'}").run(1) is not None


def test_shell_agents_heartbeat_and_progress_inside_a_run(
    qq,
    home: Path,
    db_url: str,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    me = f"{sys.executable} -m qqtui"
    script = f'sleep 0.2; {me} heartbeat && {me} progress 0.4 "indexing files"'
    run_id = int(qq("add", "--", "sh", "-c", script, check=True).stdout)
    workers.start()
    run = wait_for_status(db_url, run_id, {"succeeded"})
    run_dir = home / "default" / "sessions" / run.session_id / "runs" / str(run_id)
    progress = json.loads((run_dir / "progress.json").read_text())
    assert progress["fraction"] == 0.4 and progress["message"] == "indexing files"
    assert run.started_at is not None
    assert (run_dir / "heartbeat").stat().st_mtime > run.started_at + 0.1  # touched by the run
    # Outside a run there is nothing to heartbeat: one clear line.
    assert "not inside a qqtui run" in one_error_line(qq("heartbeat"))
    assert "not in the range" in one_error_line(qq("progress", "1.5"))


def test_agent_profiles_shape_add_and_list(qq, home: Path, db_url: str) -> None:  # type: ignore[no-untyped-def]
    (home / "config.toml").write_text(
        "[agents.qq]\n"
        'description = "the qq agent"\n'
        'command = ["echo", "qq", "{args}"]\n'
        'resume = ["echo", "resume", "{session_id}"]\n'
        "timeout = 30\n"
        'env = { QQ_MODEL = "small" }\n'
    )
    listed = json.loads(qq("agents", "--json", check=True).stdout)
    assert listed == [
        {
            "name": "qq",
            "description": "the qq agent",
            "command": ["echo", "qq", "{args}"],
            "resume": ["echo", "resume", "{session_id}"],
            "timeout": 30,
            "hung_after": None,
            "env": ["QQ_MODEL"],
        }
    ]
    added = json.loads(qq("add", "--json", "--agent", "qq", "--", "fix", "it", check=True).stdout)
    assert added["argv"] == ["echo", "qq", "fix", "it"]
    assert added["timeout_s"] == 30 and added["env"] == {"QQ_MODEL": "small"}
    resumed = json.loads(qq("resume", "--json", added["session_id"], check=True).stdout)
    assert resumed["argv"] == ["echo", "resume", added["session_id"]]
    (home / "config.toml").write_text("[agents.qq]\ntimout = 3\n")
    line = one_error_line(qq("add", "--agent", "qq", "--", "x"))
    assert "config.toml:2" in line and "agents.qq.timout" in line and "unknown key" in line


def test_cancel_or_kill_of_an_ended_run_says_so_in_plain_words(qq, home: Path) -> None:  # type: ignore[no-untyped-def]
    run_id = qq("add", "--shared-workspace", "--", "true", check=True).stdout.strip()
    qq("worker", "--until-idle", check=True)
    assert "is already succeeded; nothing to cancel" in one_error_line(qq("cancel", run_id))
    assert "is already succeeded; nothing to kill" in one_error_line(qq("kill", run_id))


def test_an_internal_error_is_one_line_naming_its_saved_traceback(home: Path) -> None:
    import subprocess

    from .conftest import cli_env

    # A command that fails as a bug would (not a QqError, not a database error).
    script = (
        "import sys, click\n"
        "from qqtui import cli\n"
        "@cli.cli.command()\n"
        "def boom():\n"
        "    raise RuntimeError('kaboom \\x1b]2;PWN\\x07')\n"
        "sys.argv = ['qqtui', 'boom']\n"
        "cli.main(['boom'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=cli_env(home), capture_output=True, text=True
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("qqtui: internal error: RuntimeError: kaboom")
    assert "\x1b" not in lines[0]
    saved = Path(lines[0].rsplit("traceback saved to ", 1)[1].rstrip(")"))
    assert saved.parent == home / "crashes"
    assert "Traceback" in saved.read_text() and "kaboom" in saved.read_text()
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600


@pytest.mark.parametrize("args", [[], ["demo"]])
def test_the_app_without_a_terminal_is_one_line_and_exit_2(
    home: Path, tmp_path: Path, args
) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from .conftest import cli_env

    out = tmp_path / "out"
    with out.open("w") as sink:
        proc = subprocess.run(
            [sys.executable, "-m", "qqtui", *args],
            env=cli_env(home),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 2
    assert "needs a terminal" in one_error_line(proc) and "qqtui ls" in proc.stderr
    assert out.read_text() == ""  # no escape codes written to the file
    assert not (home / "qqtui.db").exists()  # and no worker or database started


@pytest.mark.parametrize("option", ["--home", "--db"])
def test_an_empty_home_or_db_is_an_error_not_a_fallback(qq, option: str) -> None:  # type: ignore[no-untyped-def]
    proc = qq(option, "", "ls")
    assert proc.returncode == 2
    assert "not an empty string" in one_error_line(proc)


def test_hostile_names_and_reasons_reach_the_terminal_as_plain_text(qq, home: Path) -> None:  # type: ignore[no-untyped-def]
    hostile = "nm\x1b]2;NAMEPWN\x1b\\x\u202e\x1bkT\x1b\\"
    run_id = qq("add", "--shared-workspace", "--name", hostile, "--", "sleep", "40", check=True)
    run_id = run_id.stdout.strip()
    qq("add", "--shared-workspace", "--name", "plain", "--", "true", check=True)
    listing = qq("ls", check=True).stdout
    shown = qq("show", run_id, check=True).stdout
    for out in (listing, shown):
        assert not any(c in out for c in "\x1b\x9b\x07\u202e"), repr(out)
        assert "NAMEPWN" not in out
    lines = listing.splitlines()
    # The hostile name takes its column like any other: the AGENT column starts at the
    # same place in its row as in the plain run's.
    assert lines[1].split()[3] == "nmx"
    assert lines[1].index(" default ") == lines[2].index(" default ")
    assert "name: nmx" in shown
    assert json_name(qq("show", "--json", run_id, check=True).stdout) == hostile  # JSON keeps data


def json_name(text: str) -> str:
    return json.loads(text)["name"]


def test_broken_homes_and_databases_are_errors_not_empty_lists(tmp_path: Path) -> None:
    import sqlite3
    import subprocess

    from .conftest import cli_env

    a_file = tmp_path / "file"
    a_file.write_text("x")
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (x)")
    before = foreign.read_bytes()
    cases = [
        ({"QQ_HOME": str(a_file)}, [], "is not a directory"),
        (
            {"QQ_HOME": str(tmp_path / "h")},
            ["--db", "sqlite:////nonexistent/dir/q.db"],
            "does not exist",
        ),
        (
            {"QQ_HOME": str(tmp_path / "h")},
            ["--db", f"sqlite:///{foreign}"],
            "not a qqtui database",
        ),
    ]
    if os.access("/proc/1", os.W_OK) is False:
        cases.append(({"QQ_HOME": "/proc/1"}, [], "not writable"))
    for env, args, message in cases:
        for command in (["ls"], ["ls", "--json"]):
            proc = subprocess.run(
                [sys.executable, "-m", "qqtui", *args, *command],
                env={**cli_env(tmp_path / "unused"), **env},
                capture_output=True,
                text=True,
            )
            assert proc.returncode == 1, (env, args, proc.stdout)
            assert message in one_error_line(proc)
    # Writing commands (and the app, through the same Store.open) refuse it too, and
    # leave the other program's file exactly as it was: no qqtui schema written into it.
    proc = subprocess.run(
        [sys.executable, "-m", "qqtui", "--db", f"sqlite:///{foreign}", "add", "--", "true"],
        env=cli_env(tmp_path / "h2"),
        capture_output=True,
        text=True,
    )
    assert "not a qqtui database" in one_error_line(proc)
    assert foreign.read_bytes() == before
    assert not (tmp_path / "h").exists()


@pytest.mark.parametrize("command", ["show", "resume", "sessions", "agents", "ls"])
def test_every_json_option_says_what_it_prints(qq, command: str) -> None:  # type: ignore[no-untyped-def]
    help_text = qq(command, "--help", check=True).stdout
    line = next(line for line in help_text.splitlines() if "--json" in line)
    assert "JSON" in line.split("--json", 1)[1], line


def test_shell_completion_offers_run_and_session_ids(qq, home: Path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from .conftest import cli_env

    first = json.loads(qq("add", "--json", "--shared-workspace", "--", "true", check=True).stdout)
    qq("add", "--shared-workspace", "--name", "x\x1b]2;T\x07y", "--", "true", check=True)

    def complete(words: str, shell: str = "zsh") -> list[str]:
        env = {
            **cli_env(home),
            "_QQTUI_COMPLETE": f"{shell}_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "qqtui"], env=env, capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "\x1b" not in proc.stdout
        return proc.stdout.splitlines()

    shown = complete("qqtui show ")
    # zsh gets (type, value, help) triples, newest run first, the help sanitised.
    assert shown[1] == "2" and shown[4] == "1"
    assert "xy" in shown[2]
    assert "1" in complete("qqtui cancel 1") and "2" not in complete("qqtui cancel 1")
    assert first["session_id"] in complete("qqtui resume ")
    assert first["session_id"] in complete("qqtui add --session ")


def test_add_tty_options_profiles_and_resume_keep_the_terminal(qq, home: Path) -> None:  # type: ignore[no-untyped-def]
    on_tty = json.loads(
        qq("add", "--json", "--tty", "--size", "100x30", "--", "true", check=True).stdout
    )
    assert (on_tty["tty"], on_tty["tty_cols"], on_tty["tty_rows"]) == (True, 100, 30)
    default = json.loads(qq("add", "--json", "--tty", "--", "true", check=True).stdout)
    assert (default["tty_cols"], default["tty_rows"]) == (120, 40)
    plain = json.loads(qq("add", "--json", "--", "true", check=True).stdout)
    assert plain["tty"] is False and plain["tty_cols"] is None
    shown = qq("show", str(on_tty["id"]), check=True).stdout
    assert f"100x30 (attach: qqtui attach {on_tty['id']}" in shown
    assert "terminal" not in qq("show", str(plain["id"]), check=True).stdout
    for args, message in (
        (["--size", "80x24"], "--size only applies with --tty"),
        (["--tty", "--size", "80"], "COLSxROWS"),
        (["--tty", "--size", "5x24"], "terminal width must be 10 to 1000"),
        (["--tty", "--size", "80x1"], "terminal height must be 2 to 500"),
    ):
        out = qq("add", *args, "--", "true")
        assert out.returncode != 0 and message in out.stderr, (args, out.stderr)
    # A profile's tty and size apply unless the command line says otherwise.
    (home / "config.toml").write_text(
        '[agents.bot]\ntty = true\ntty_size = "90x20"\nwaiting_patterns = ["Proceed\\\\?"]\n'
    )
    bot = json.loads(qq("add", "--json", "--agent", "bot", "--", "true", check=True).stdout)
    assert (bot["tty"], bot["tty_cols"], bot["tty_rows"]) == (True, 90, 20)
    no = json.loads(
        qq("add", "--json", "--agent", "bot", "--no-tty", "--", "true", check=True).stdout
    )
    assert no["tty"] is False
    resumed = json.loads(qq("resume", bot["session_id"], "--json", check=True).stdout)
    assert (resumed["tty"], resumed["tty_cols"], resumed["tty_rows"]) == (True, 90, 20)
    (home / "config.toml").write_text('[agents.bot]\nwaiting_patterns = ["(unclosed"]\n')
    bad = qq("add", "--agent", "bot", "--", "true")
    assert bad.returncode != 0 and "agents.bot.waiting_patterns" in bad.stderr
    assert "not a regular expression" in bad.stderr
