"""Shared bits of the demo agents: colours, line printing, heartbeating sleep."""

from __future__ import annotations

import argparse
import sys
import time

from qqtui.agent import Session

RESET = "\x1b[0m"
BOLD = "\x1b[1m"
DIM = "\x1b[2m"
RED = "\x1b[31m"
GREEN = "\x1b[32m"
YELLOW = "\x1b[33m"
BLUE = "\x1b[34m"
MAGENTA = "\x1b[35m"
CYAN = "\x1b[36m"

# Children and sleeps never outlive this, whatever the flags say: a demo must not leave
# processes running forever if qqtui (or a test) forgets them.
MAX_LIFETIME_S = 600.0


def paint(text: str, *styles: str) -> str:
    return "".join(styles) + text + RESET


def say(text: str = "") -> None:
    # Flush per line: stdout is a pipe under qqtui, and the output pane shows it live.
    print(text, flush=True)


def parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description)


def seconds(value: str) -> float:
    """argparse type: a non-negative duration capped at MAX_LIFETIME_S."""
    number = float(value)
    if not number >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{value} is not a non-negative number of seconds")
    return min(number, MAX_LIFETIME_S)


def busy_wait(session: Session, duration: float, beat: bool = True) -> None:
    """Sleep `duration` in small slices, heartbeating so qqtui knows we are alive."""
    deadline = time.monotonic() + duration
    while (left := deadline - time.monotonic()) > 0:
        if beat:
            session.heartbeat()
        time.sleep(min(0.1, left))


def stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
