"""An agent that does some work and then fails with a non-zero exit code."""

from __future__ import annotations

import sys

from qqtui.agent import Session
from qqtui.demo.agents._common import (
    BOLD,
    CYAN,
    GREEN,
    RED,
    busy_wait,
    paint,
    parser,
    say,
    seconds,
    stderr,
)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--seconds", type=seconds, default=8.0, help="work before failing")
    p.add_argument("--exit-code", type=int, default=3, help="the exit status (1-255)")
    args = p.parse_args(argv)
    if not 1 <= args.exit_code <= 255:
        p.error("--exit-code must be 1-255: a failing agent exits non-zero")

    session = Session.current(agent="fail")
    say(paint(f"fail · session {session.session_id}", BOLD, CYAN))
    session.append_history({"role": "user", "content": "migrate the database"})
    steps = ["dump schema", "convert tables", "apply migration 0042"]
    for i, step in enumerate(steps):
        session.progress(i / len(steps), step)
        say(f"{step}…")
        busy_wait(session, args.seconds / len(steps))
        if i < len(steps) - 1:
            say("  " + paint("ok", GREEN))
    message = "migration 0042 failed: column 'owner' already exists"
    session.append_history({"role": "assistant", "content": message, "error": True})
    stderr(paint(f"error: {message}", BOLD, RED))
    say(paint(f"exiting with status {args.exit_code}", RED))
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())
