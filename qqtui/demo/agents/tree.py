"""An agent with a process tree: a worker child with a grandchild, and one child that
escapes its process group with os.setsid (what a daemonizing tool does).

Every child watches its parent: when the parent goes away (the agent exits or is
killed) the child is reparented, notices within a fraction of a second and exits; a
tree kill ends them at once. No child outlives --max-lifetime (at most 10 minutes).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from qqtui.agent import Session
from qqtui.demo.agents._common import (
    BOLD,
    CYAN,
    DIM,
    GREEN,
    MAX_LIFETIME_S,
    YELLOW,
    busy_wait,
    paint,
    parser,
    say,
    seconds,
)


def _child_argv(role: str, lifetime: float, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "qqtui.demo.agents.tree",
        "--child",
        role,
        "--max-lifetime",
        str(lifetime),
        *extra,
    ]


def run_child(role: str, lifetime: float, spawn_grandchild: bool) -> int:
    """A child's life: maybe a grandchild, then idle until the parent is gone."""
    parent = os.getppid()
    if role == "escaped" and os.getsid(0) != os.getpid():
        os.setsid()  # leave the agent's process group and session (unless it leads one)
    grandchild = None
    if spawn_grandchild:
        grandchild = subprocess.Popen(_child_argv("grandchild", lifetime))
    # Machine-readable so tests (and curious users) can find the escaped process.
    say(
        paint(
            f"  child role={role} pid={os.getpid()} pgid={os.getpgid(0)} "
            f"sid={os.getsid(0)} ppid={parent}",
            DIM,
        )
    )
    deadline = time.monotonic() + lifetime
    try:
        while time.monotonic() < deadline and os.getppid() == parent:
            time.sleep(0.2)
    finally:
        if grandchild is not None and grandchild.poll() is None:
            grandchild.terminate()
            grandchild.wait(timeout=10)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--seconds", type=seconds, default=45.0, help="how long the agent works")
    p.add_argument(
        "--max-lifetime", type=seconds, default=MAX_LIFETIME_S, help="hard cap for every child"
    )
    p.add_argument("--child", choices=["worker", "escaped", "grandchild"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return run_child(args.child, args.max_lifetime, spawn_grandchild=args.child == "worker")

    session = Session.current(agent="tree")
    say(paint(f"tree · session {session.session_id} · agent pid {os.getpid()}", BOLD, CYAN))
    session.append_history({"role": "user", "content": "build the index with helper processes"})

    lifetime = min(args.max_lifetime, args.seconds + 30)
    children = [
        subprocess.Popen(_child_argv("worker", lifetime)),
        subprocess.Popen(_child_argv("escaped", lifetime)),
    ]
    say(paint(f"spawned worker pid={children[0].pid} (with a grandchild)", GREEN))
    say(paint(f"spawned escaped pid={children[1].pid} (calls os.setsid)", YELLOW))

    def on_term(signum: int, _frame: FrameType | None) -> None:
        say(paint(f"got signal {signum}: stopping children", YELLOW))
        stop(children)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)

    steps = max(1, int(args.seconds))
    for i in range(steps):
        session.progress(i / steps, f"indexing shard {i + 1}/{steps}")
        say(f"shard {i + 1}/{steps}: {paint('ok', GREEN)}")
        busy_wait(session, args.seconds / steps)
    session.progress(1.0, "index built")
    session.append_history({"role": "assistant", "content": f"indexed {steps} shards"})
    stop(children)
    say(paint("children stopped; done", BOLD, GREEN))
    return 0


def stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


if __name__ == "__main__":
    sys.exit(main())
