"""The runs `qqtui demo` queues: together they show every feature of the app within a
minute (live colour output, history, progress, a process tree, a hung run, a failure,
a flood that hits the log cap, hostile output rendered inert, and an interactive
agent on a terminal of its own that waits for its user's answer)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

AGENTS = ("coder", "tree", "hang", "fail", "flood", "hostile", "review")


@dataclass(frozen=True, slots=True)
class DemoRun:
    """One demo run: a display name, the agent (session namespace) and its argv."""

    name: str
    agent: str
    argv: tuple[str, ...]
    timeout_s: float | None
    hung_after_s: float | None
    description: str = ""
    tty: bool = False  # on a pseudo-terminal: attach to it, answer it


def agent_argv(agent: str, *args: str) -> tuple[str, ...]:
    """argv that runs demo agent `agent` with this interpreter (so the venv's qqtui)."""
    if agent not in AGENTS:
        raise ValueError(f"unknown demo agent {agent!r}; known: {', '.join(AGENTS)}")
    return (sys.executable, "-m", f"qqtui.demo.agents.{agent}", *args)


def demo_runs() -> list[DemoRun]:
    """The set a demo queues, in the order to queue them."""
    return [
        DemoRun(
            "coder: fix the flaky test",
            "coder",
            agent_argv("coder", "--seconds", "40", "--task", "fix the flaky queue test"),
            timeout_s=300,
            hung_after_s=60,
            description="colour output, history, notes, progress",
        ),
        DemoRun(
            "coder: add retries",
            "coder",
            agent_argv("coder", "--seconds", "75", "--task", "add retries with backoff"),
            timeout_s=300,
            hung_after_s=60,
            description="a second agent in parallel",
        ),
        DemoRun(
            "tree: index with helpers",
            "tree",
            agent_argv("tree", "--seconds", "90"),
            timeout_s=300,
            hung_after_s=60,
            description="a process tree; one child escapes with setsid",
        ),
        DemoRun(
            "hang: slow API call",
            "hang",
            agent_argv("hang", "--active-seconds", "5", "--hang-seconds", "600"),
            # Silent after 5 s, flagged hung 20 s later, killed (timed out) at 2 minutes.
            timeout_s=120,
            hung_after_s=20,
            description="stops printing and heartbeating: becomes hung, then times out",
        ),
        DemoRun(
            "fail: migrate database",
            "fail",
            agent_argv("fail", "--seconds", "8", "--exit-code", "3"),
            timeout_s=120,
            hung_after_s=60,
            description="fails with exit status 3",
        ),
        DemoRun(
            "flood: dump the table",
            "flood",
            agent_argv("flood", "--megabytes", "30", "--long-line-kb", "1024"),
            timeout_s=120,
            hung_after_s=60,
            description="30 MB of output and one 1 MB line",
        ),
        DemoRun(
            "hostile: escape sequences",
            "hostile",
            agent_argv("hostile", "--seconds", "30"),
            timeout_s=120,
            hung_after_s=60,
            description="OSC 52, title changes, screen clears, Rich markup",
        ),
        DemoRun(
            "review: asks before it applies",
            "review",
            agent_argv("review", "--seconds", "8"),
            # Waiting for its user is not hanging: the threshold never fires while it waits.
            timeout_s=600,
            hung_after_s=60,
            description="full-screen on a terminal; waits for y/n (attach with a, press y)",
            tty=True,
        ),
    ]
