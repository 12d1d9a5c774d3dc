"""Benchmark the agent kit: import cost, heartbeat in a hot loop, locked JSON updates.

    .venv/bin/python bench/bench_agent_kit.py                 # print a markdown section
    .venv/bin/python bench/bench_agent_kit.py --update-readme # also put it in bench/README.md

The section replaces an existing "## Agent kit" section of bench/README.md, or is
appended; other sections are left as they are.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from qqtui import agent
from qqtui.agent import Session

README = Path(__file__).with_name("README.md")
HEADING = "## Agent kit"


def import_ms(repeat: int = 15) -> tuple[float, float, float]:
    """Median wall time of importing the kit, sessions and records in fresh interpreters."""
    code = "import time; t = time.perf_counter(); import {mod}; print(time.perf_counter() - t)"
    out = []
    for mod in ("qqtui.agent", "qqtui.core.sessions", "qqtui.core.records"):
        samples = [
            float(
                subprocess.run(
                    [sys.executable, "-c", code.format(mod=mod)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            for _ in range(repeat)
        ]
        out.append(statistics.median(samples) * 1000)
    return out[0], out[1], out[2]


def heartbeat_ms(session: Session, calls: int = 100_000, repeat: int = 7) -> float:
    """Median total time of `calls` heartbeat() calls (method)."""
    totals = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(calls):
            session.heartbeat()
        totals.append(time.perf_counter() - t)
    return statistics.median(totals) * 1000


def module_heartbeat_ms(calls: int = 100_000, repeat: int = 7) -> float:
    """Median total time of `calls` module-level agent.heartbeat() calls."""
    totals = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(calls):
            agent.heartbeat()
        totals.append(time.perf_counter() - t)
    return statistics.median(totals) * 1000


def heartbeat_freshness(session: Session, seconds: float = 3.0) -> tuple[int, float, int]:
    """Hot loop for `seconds`: touches, the largest gap between mtime changes, calls."""
    hb = session.heartbeat_file
    assert hb is not None
    session._last_beat = float("-inf")  # start the window fresh
    last_mtime = None
    change_times: list[float] = []
    calls = 0
    end = time.monotonic() + seconds
    while (now := time.monotonic()) < end:
        session.heartbeat()
        calls += 1
        if calls % 1000 == 0:  # observe the file itself, not what heartbeat() returned
            mtime = os.stat(hb).st_mtime_ns
            if mtime != last_mtime:
                change_times.append(now)
                last_mtime = mtime
    gaps = [b - a for a, b in itertools.pairwise(change_times)]
    return len(change_times), max(gaps, default=0.0), calls


def update_json_rates(session: Session) -> tuple[float, float]:
    """Per-op ms of update_json in one process, and wall s of 10 processes x 500."""
    n = 500
    t = time.perf_counter()
    for _ in range(n):
        session.update_json("bench_counter.json", lambda v: v + 1, 0)
    single = (time.perf_counter() - t) / n * 1000
    code = textwrap.dedent(
        f"""
        from qqtui.agent import Session
        s = Session({str(session.path)!r})
        for _ in range(500):
            s.update_json("bench_parallel.json", lambda v: v + 1, 0)
        """
    )
    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(10)]
    for proc in procs:
        proc.wait()
    wall = time.perf_counter() - t
    assert session.read_json("bench_parallel.json") == 5000
    return single, wall


def append_history_ms(session: Session, n: int = 1000) -> float:
    """Per-append ms over the first `n` messages (the whole file is rewritten each time)."""
    t = time.perf_counter()
    for i in range(n):
        session.append_history({"role": "assistant", "content": f"message {i} " + "x" * 200})
    return (time.perf_counter() - t) / n * 1000


def section() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        os.environ.update(QQ_HOME=str(home), QQ_AGENT="bench")
        for key in ("QQ_SESSION_ID", "QQ_SESSION_DIR", "QQ_RUN_ID"):
            os.environ.pop(key, None)
        os.environ["QQ_HEARTBEAT_FILE"] = str(home / "heartbeat")
        session = Session.current()
        imp_agent, imp_sessions, imp_records = import_ms()
        hb_method = heartbeat_ms(session)
        hb_module = module_heartbeat_ms()
        touches, max_gap, calls = heartbeat_freshness(session)
        upd_single, upd_parallel = update_json_rates(session)
        hist = append_history_ms(session)
    return textwrap.dedent(
        f"""\
        {HEADING}

        `bench/bench_agent_kit.py`, 2026-11-22, {os.cpu_count()} cores, {platform.machine()},
        Python {platform.python_version()}, temp dir on the local disk. Medians.

        | what | result | target |
        | --- | --- | --- |
        | `import qqtui.agent` (fresh interpreter, excl. startup) | {imp_agent:.1f} ms | cheap |
        | of which `qqtui.core.records` (for `QqError`) | {imp_records:.1f} ms | |
        | `import qqtui.core.sessions` (loaded lazily on first write) | {imp_sessions:.1f} ms | |
        | 100,000 x `Session.heartbeat()` | {hb_method:.1f} ms | < 50 ms |
        | 100,000 x `agent.heartbeat()` (module function) | {hb_module:.1f} ms | < 50 ms |
        | hot loop 3 s ({calls:,} calls): mtime changes / max gap | {touches} / {max_gap:.2f} s | gap ≤ 1 s |
        | `update_json` one process | {upd_single:.2f} ms/op | |
        | `update_json` 10 processes x 500 (final 5,000) | {upd_parallel:.2f} s wall | |
        | `append_history`, first 1,000 messages | {hist:.2f} ms/append | |
        """
    )


def update_readme(text: str) -> None:
    # Re-read right before writing: other benchmarks add their own sections.
    old = README.read_text() if README.exists() else "# Benchmarks\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == HEADING), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + text + ("\n" + tail if tail else "")
    README.write_text(new)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--update-readme", action="store_true", help="write the section into README")
    args = p.parse_args()
    text = section()
    print(text)
    if args.update_readme:
        update_readme(text)


if __name__ == "__main__":
    main()
