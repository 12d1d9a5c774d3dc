"""An agent that works for a few seconds, then stops printing and heartbeating while
staying alive: what a stuck network call looks like. qqtui should flag it hung."""

from __future__ import annotations

import os
import sys
import time

from qqtui.agent import Session
from qqtui.demo.agents._common import BOLD, CYAN, YELLOW, busy_wait, paint, parser, say, seconds


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--active-seconds", type=seconds, default=5.0, help="time spent working")
    p.add_argument(
        "--hang-seconds", type=seconds, default=600.0, help="time spent silent (capped at 600)"
    )
    args = p.parse_args(argv)

    session = Session.current(agent="hang")
    say(paint(f"hang · session {session.session_id} · pid {os.getpid()}", BOLD, CYAN))
    session.append_history({"role": "user", "content": "call the slow API"})
    ticks = max(1, int(args.active_seconds * 2))
    for i in range(ticks):
        session.progress(0.5 * i / ticks, "waiting for the API")
        say(f"request {i + 1}: pending…")
        busy_wait(session, args.active_seconds / ticks)
    session.append_history({"role": "assistant", "content": "still waiting for the API"})
    say(paint(f"going quiet for {args.hang_seconds:g}s: no output, no heartbeat", YELLOW))
    # Deliberately no heartbeat and no output from here on: this is the hung case.
    time.sleep(args.hang_seconds)
    say("woke up after the silence; exiting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
