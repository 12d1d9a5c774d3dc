"""Reading a session for people: history.json and the runs' output logs (core/sessions)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from qqtui.core.sessions import History, read_history, run_logs


def test_history_is_a_conversation_raw_json_missing_or_a_one_line_problem(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    assert read_history(path) == History(missing=True)
    parts = [{"type": "text", "text": "a"}, {"type": "image"}]
    path.write_text(json.dumps([{"role": "user", "content": parts}]))
    assert read_history(path).messages == (("user", 'a\n{"type": "image"}'),)
    path.write_text(json.dumps({"messages": [{"role": "x"}]}))  # no content: not one
    assert read_history(path).raw == '{\n  "messages": [\n    {\n      "role": "x"\n    }\n  ]\n}'
    path.write_text("{not json")
    problem = read_history(path).problem
    assert problem is not None and problem.startswith("cannot show history.json:")
    assert "\n" not in problem
    path.unlink()
    path.mkdir()
    problem = read_history(path).problem
    assert problem is not None and problem.startswith("cannot read history.json:")


def test_run_logs_are_the_numbered_run_directories_newest_first(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name in ("3", "12", "notes"):
        (runs / name).mkdir(parents=True)
    (runs / "7").write_text("a file, not a run")
    os.symlink(runs / "3", runs / "9")  # a link is not a run's directory
    assert run_logs(tmp_path) == [(12, runs / "12" / "output.log"), (3, runs / "3" / "output.log")]
    assert run_logs(tmp_path / "nowhere") == []
