"""ProcessTable re-reads a sleeping process's resident size only when its stat says it
may have changed: memory a process touches shows at the next scan, as psutil has it."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil

from qqtui.core.procs.kill import kill_tree
from qqtui.core.procs.scan import RSS_REFRESH_S, ProcessTable

from ..conftest import wait_for
from .test_procs import start, wait_exit

# Waits for a line on stdin, then makes 64 MiB resident and reports it; then sleeps.
GROW = (
    "import sys, time\n"
    "sys.stdin.readline()\n"
    "block = bytearray(64 << 20)\n"
    "block[::4096] = b'x' * len(block[::4096])\n"
    "print('grown', flush=True)\n"
    "time.sleep(300)\n"
)


def test_memory_a_sleeping_process_touches_shows_at_the_next_scan(tmp_path: Path) -> None:
    fifo = tmp_path / "go"
    done = tmp_path / "grown"
    script = (
        f"import os, sys; sys.stdin = open({str(fifo)!r}); sys.stdout = open({str(done)!r}, 'w')\n"
        + GROW
    )
    os.mkfifo(fifo)
    spawned, target = start(tmp_path, [sys.executable, "-c", script])
    try:
        table = ProcessTable()

        def asleep() -> bool:
            tree = table.scan([target])[1]
            return tree.count == 1 and psutil.Process(tree.procs[0].pid).status() == "sleeping"

        wait_for(asleep, 10, what="the process asleep on its fifo")
        before = table.scan([target])[1].procs[0]
        before_at = time.monotonic()
        assert before.rss == psutil.Process(before.pid).memory_info().rss
        with open(fifo, "w") as go:
            go.write("now\n")
        wait_for(lambda: done.exists() and "grown" in done.read_text(), 10, what="grown")
        wait_for(asleep, 10, what="asleep again")
        after = table.scan([target])[1].procs[0]
        # Within RSS_REFRESH_S: only the page faults told the table to read it again.
        assert time.monotonic() - before_at < RSS_REFRESH_S
        assert after.rss >= before.rss + (60 << 20)
        assert after.rss == psutil.Process(after.pid).memory_info().rss
    finally:
        kill_tree(target, 0)
        wait_exit(spawned)
