"""render_history: a session's conversation keeps its line breaks, loses every escape."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Group
from rich.text import Text

from qqtui.tui.screens.sessions import render_history


def _plain(rendered: object) -> str:
    parts = rendered.renderables if isinstance(rendered, Group) else [rendered]
    return "".join(part.plain for part in parts if isinstance(part, Text))


def test_a_message_keeps_its_lines_and_loses_its_escapes(tmp_path: Path) -> None:
    history = tmp_path / "history.json"
    content = "hello\nworld\x1b]2;TITLE\x07\n\tindented \x1b[31mred\x1b[0m"
    history.write_text(json.dumps({"messages": [{"role": "user", "content": content}]}))
    shown = _plain(render_history(history))
    assert "hello\nworld\n\tindented red" in shown
    assert "\x1b" not in shown and "TITLE" not in shown


def test_raw_json_keeps_its_indentation(tmp_path: Path) -> None:
    history = tmp_path / "history.json"
    history.write_text(json.dumps({"not": "a conversation"}))
    assert _plain(render_history(history)) == '{\n  "not": "a conversation"\n}'
