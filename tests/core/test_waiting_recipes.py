"""The README's recipes for "When a run needs you", run exactly as written: the Claude
Code hooks of its settings.json block and the Codex CLI notify line of its TOML block,
each inside a real run under a real worker, fed the JSON the tool sends."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import tomllib
from pathlib import Path

import pytest

from qqtui.core.snapshot import Snapshot

from ..conftest import REPO, Workers, wait_for

SECTION = "## When a run needs you"

# What the tools send (Claude Code: hook input on stdin; Codex: notify's one argument).
CLAUDE_NOTIFICATION = {
    "session_id": "abc123",
    "transcript_path": "/tmp/transcript.jsonl",
    "cwd": "/work/project",
    "hook_event_name": "Notification",
    "message": "Claude needs your permission to use Bash",
    "notification_type": "permission_prompt",
}
CLAUDE_POST_TOOL_USE = {
    "session_id": "abc123",
    "hook_event_name": "PostToolUse",
    "tool_name": "Bash",
    "tool_input": {"command": "ls"},
    "tool_response": {"stdout": ""},
}
CODEX_TURN_COMPLETE = {
    "type": "agent-turn-complete",
    "thread-id": "b5f6c1c2",
    "turn-id": "12345",
    "cwd": "/work/project",
    "input-messages": ["Rename foo to bar"],
    "last-assistant-message": "Rename complete; ready for review.",
}


def readme_block(language: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    match = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert match, f"no {language} block in the README's {SECTION!r}"
    return match.group(1)


@pytest.fixture
def qqtui_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`qqtui` on PATH, as an installed one would be, running this checkout."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "qqtui"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m qqtui "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    return bin_dir


def add(qq, *args: str) -> int:  # type: ignore[no-untyped-def]
    return int(qq("add", *args, check=True).stdout.strip())


def test_the_claude_code_hooks_set_and_clear_the_flag(
    tmp_path: Path,
    db_url: str,
    qq,
    workers: Workers,
    qqtui_on_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    hooks = json.loads(readme_block("json"))["hooks"]
    notify = hooks["Notification"][0]["hooks"][0]
    done = hooks["PostToolUse"][0]["hooks"][0]
    assert notify["type"] == done["type"] == "command"
    (tmp_path / "notification.json").write_text(json.dumps(CLAUDE_NOTIFICATION))
    (tmp_path / "post_tool_use.json").write_text(json.dumps(CLAUDE_POST_TOOL_USE))
    go = tmp_path / "go"
    # Claude Code runs each hook command through a shell with the event's JSON on stdin.
    script = (
        f'sh -c "$NOTIFY_HOOK" < {tmp_path}/notification.json || exit 9\n'
        f"while [ ! -e {go} ]; do sleep 0.05; done\n"
        f'sh -c "$DONE_HOOK" < {tmp_path}/post_tool_use.json || exit 8\n'
        "sleep 30\n"
    )
    run_id = add(
        qq,
        "--env",
        f"NOTIFY_HOOK={notify['command']}",
        "--env",
        f"DONE_HOOK={done['command']}",
        "--",
        "sh",
        "-c",
        script,
    )
    workers.start()
    snap = Snapshot(db_url)
    wait_for(lambda: snap.run(run_id).waiting, 20, what="the waiting flag")  # type: ignore[union-attr]
    assert snap.run(run_id).waiting_reason == CLAUDE_NOTIFICATION["message"]  # type: ignore[union-attr]
    go.touch()
    wait_for(lambda: not snap.run(run_id).waiting, 20, what="the flag to clear")  # type: ignore[union-attr]
    events = [(e.kind, e.reason) for e in snap.events(run_id) if e.kind in ("waiting", "ready")]
    assert events == [
        ("waiting", f"agent: {CLAUDE_NOTIFICATION['message']}"),
        ("ready", "agent: the agent works again"),
    ]


def test_the_codex_notify_line_sets_the_flag(
    db_url: str,
    qq,
    workers: Workers,
    qqtui_on_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    notify = tomllib.loads(readme_block("toml"))["notify"]
    # Codex runs the notify argv with the JSON appended as one argument.
    run_id = add(
        qq,
        "--",
        "sh",
        "-c",
        '"$@" || exit 9; sleep 30',
        "sh",
        *notify,
        json.dumps(CODEX_TURN_COMPLETE),
    )
    workers.start()
    snap = Snapshot(db_url)
    wait_for(lambda: snap.run(run_id).waiting, 20, what="the waiting flag")  # type: ignore[union-attr]
    assert (
        snap.run(run_id).waiting_reason  # type: ignore[union-attr]
        == "turn complete: Rename complete; ready for review."
    )
