"""A well-behaved coding agent: reads, thinks, edits, tests; history, notes, progress."""

from __future__ import annotations

import sys

from qqtui.agent import Session
from qqtui.demo.agents._common import (
    BOLD,
    CYAN,
    DIM,
    GREEN,
    MAGENTA,
    RED,
    YELLOW,
    busy_wait,
    paint,
    parser,
    say,
    seconds,
)

STEPS = [
    ("read", "tests/test_queue.py", "the flaky test waits on a sleep(0.1)"),
    ("grep", "claim_next_run", "3 call sites, one without a transaction"),
    ("think", "", "the claim and the status change must be one UPDATE"),
    ("edit", "store.py", "- status = 'running'\n+ UPDATE runs SET status = 'running' WHERE ..."),
    ("run", "pytest -q tests/test_queue.py", "12 passed in 0.84s"),
    ("edit", "tests/test_queue.py", "- time.sleep(0.1)\n+ wait_for(lambda: run.done)"),
    ("run", "pytest -q", "214 passed in 9.12s"),
    ("note", "notes.md", "claims must be conditional updates"),
]


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--task", default="fix the flaky queue test")
    p.add_argument("--seconds", type=seconds, default=40.0, help="total working time")
    args = p.parse_args(argv)

    session = Session.current(agent="coder")
    pause = args.seconds / len(STEPS)
    say(paint(f"coder · session {session.session_id}", BOLD, CYAN))
    say(paint("user: ", BOLD) + args.task)
    session.append_history({"role": "user", "content": args.task})

    for i, (tool, target, result) in enumerate(STEPS, start=1):
        session.progress((i - 1) / len(STEPS), f"{tool} {target}".strip())
        label = paint(f"[{i}/{len(STEPS)}] {tool:<5}", BOLD, MAGENTA)
        say(f"{label} {paint(target, CYAN)}" if target else f"{label} {paint('…', DIM)}")
        busy_wait(session, pause)
        for line in result.splitlines():
            if line.startswith("+"):
                say("    " + paint(line, GREEN))
            elif line.startswith("-"):
                say("    " + paint(line, RED))
            elif tool == "think":
                say("    " + paint(line, DIM, YELLOW))
            else:
                say("    " + line)
        if tool == "note":
            session.append_note("notes.md", f"- {result}")
        session.append_history(
            {"role": "tool", "name": tool, "content": f"{target}: {result}".strip(": ")}
        )

    summary = "Fixed: the claim is now one conditional UPDATE and the test waits on state."
    session.append_history({"role": "assistant", "content": summary})
    session.progress(1.0, "done")
    say(paint("assistant: ", BOLD, GREEN) + summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
