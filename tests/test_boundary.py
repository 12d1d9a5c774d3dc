"""The layers: core never imports the UI toolkit; the app never does SQL or signals itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "qqtui"


def test_core_imports_without_textual_or_rich() -> None:
    code = (
        "import sys, pkgutil, importlib, qqtui.core\n"
        "for m in pkgutil.iter_modules(qqtui.core.__path__):\n"
        "    if m.name != 'runshim':\n"
        "        importlib.import_module('qqtui.core.' + m.name)\n"
        "import qqtui.agent, qqtui.config\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich') or m.startswith('qqtui.tui'))\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_core_source_never_mentions_the_ui() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+(textual|rich|qqtui\.tui)\b", re.M)
    offenders = [p.name for p in (PKG / "core").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_app_never_runs_sql_or_signals_processes() -> None:
    pattern = re.compile(r"os\.kill|killpg|\.execute\(|send_signal|sqlite3|sqlalchemy")
    offenders = [
        f"{p.relative_to(PKG)}:{n}"
        for p in (PKG / "tui").rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_shim_is_stdlib_only() -> None:
    text = (PKG / "core" / "runshim.py").read_text()
    assert not re.search(r"^\s*(from|import)\s+(qqtui|psutil|sqlalchemy)", text, re.M)


def test_cli_imports_the_app_only_to_open_it() -> None:
    code = (
        "import sys, qqtui.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich') or m.startswith('qqtui.tui'))\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # Its words come from core (qqtui.core.presentation); only launching needs the app.
    named = re.findall(
        r"^\s*(?:from|import)\s+(qqtui\.tui[\w.]*)", (PKG / "cli.py").read_text(), re.M
    )
    assert set(named) == {"qqtui.tui.entry"}
