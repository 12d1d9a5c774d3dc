"""The output pane of a tty run (TerminalView) in the real app under tmux (issue #15).

    .venv/bin/python bench/bench_tty_view.py                  # both parts, prints a table
    .venv/bin/python bench/bench_tty_view.py --update-readme  # also write "## tty view (#15)"

Both parts run `python -m qqtui --home H` in a 160x45 window of a private tmux server
(bench_app's Tmux), on a temp home with a real `qqtui worker`.

redraw  one selected tty run (120x40) that redraws its whole screen 30 times a second,
        each frame a different full screen of text in colour, its last row
        "T=<wall clock ms>". The app's CPU (psutil user+system) over windows of
        --cpu-seconds; then the lag: `capture-pane -p` polled, and for each capture the
        wall clock minus the newest T on screen (what the pane is behind the run, give
        or take a capture: the capture's own cost is printed too).
select  a finished tty run whose log is 64 MiB of full-screen redraws (cursor home, no
        clear: the worst case for the bounded replay, which then replays its cap) ending
        on a screen with a unique word; another run is selected. Time from the key that
        selects the big run to its word on screen, --selects times.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from _machine import code_state, machine_line, percentile, spread, update_readme_section
from bench_app import (
    DATE,
    PY,
    Tmux,
    cpu_windows,
    env_for,
    selected_run,
    start_worker,
    stop_home,
    submit,
)

from qqtui.config import default_db_url
from qqtui.core.intents import output_log_path
from qqtui.core.records import Status
from qqtui.core.store import Store

COLS, ROWS = 120, 40
REDRAW = f"""
import sys, time
cols, rows = {COLS}, {ROWS}
out = sys.stdout
out.write("\\x1b[?1049h\\x1b[2J")
n = 0
while True:
    n += 1
    body = []
    for r in range(rows - 1):
        body.append("\\x1b[%d;1H\\x1b[3%dm" % (r + 1, (n + r) % 7 + 1))
        body.append(("frame %d row %d " % (n, r)).ljust(cols, "x")[:cols])
    body.append("\\x1b[0m\\x1b[%d;1HT=%d " % (rows, int(time.time() * 1000)))
    out.write("".join(body))
    out.flush()
    time.sleep(1 / 30)
"""
BIG_LOG = 64 * 1024 * 1024
WORD = "SELECTED-SCREEN-OK"


def big_log(path: Path) -> None:
    """64 MiB of full-screen frames (cursor home, never a clear), then the last screen."""
    frame = b"".join(
        b"\x1b[%d;1H\x1b[3%dm%s" % (r + 1, r % 7 + 1, (b"old frame row %d " % r).ljust(COLS, b"y"))
        for r in range(ROWS)
    )
    # On the last row: a pane shorter than the terminal shows its bottom rows.
    last = b"\x1b[%d;1H\x1b[0m" % ROWS + WORD.encode().ljust(COLS)
    with open(path, "wb") as fh:
        written = 0
        while written < BIG_LOG - len(last):
            fh.write(frame)
            written += len(frame)
        fh.write(last)


def start_app(tmux: Tmux, home: Path) -> psutil.Process:
    pid = tmux.start("app", f"exec {PY} -m qqtui --home {home}", env_for(home))
    tmux.wait_for("app", lambda s: "Launch" in s, timeout=60, poll=0.1)
    return psutil.Process(pid)


def part_redraw(work: Path, args: argparse.Namespace) -> dict:
    home = work / "redraw"
    home.mkdir()
    worker = start_worker(home, 4)
    store = Store.open(default_db_url(home))
    try:
        run = submit(
            store, home, [PY, "-c", REDRAW], name="redraw", cwd="/", tty=True, tty_size=(COLS, ROWS)
        )
    finally:
        store.close()
    tmux = Tmux()
    try:
        app = start_app(tmux, home)
        tmux.wait_for("app", lambda s: "T=" in s, 60)
        print(f"  redraw: run {run.id} on screen; CPU", flush=True)
        cpu = cpu_windows({"app": app}, args.cpu_seconds, args.cpu_windows)["app"]
        lags: list[float] = []
        capture: list[float] = []
        for _ in range(args.lag_samples):
            t0 = time.monotonic()
            text = tmux.screen("app")
            now = time.time() * 1000
            capture.append((time.monotonic() - t0) * 1000)
            stamps = [int(m) for m in re.findall(r"T=(\d{13})", text)]
            if stamps:
                lags.append(now - max(stamps))
            time.sleep(0.05)
        return {"cpu": cpu, "lag": lags, "capture": capture, "samples": args.lag_samples}
    finally:
        tmux.kill_server()
        stop_home(home, [worker])


def part_select(work: Path, args: argparse.Namespace) -> dict:
    home = work / "select"
    home.mkdir()
    worker = start_worker(home, 4)
    store = Store.open(default_db_url(home))
    try:
        big = submit(store, home, ["true"], name="bigtty", cwd="/", tty=True, tty_size=(COLS, ROWS))
        deadline = time.monotonic() + 60
        while store.get_run(big.id).status is not Status.SUCCEEDED:
            if time.monotonic() > deadline:
                raise SystemExit("the big-log run did not finish")
            time.sleep(0.1)
        big = store.get_run(big.id)
        big_log(Path(output_log_path(home, big)))
        other = submit(store, home, ["sleep", "600"], name="other", cwd="/", hung_after_s=86400)
    finally:
        store.close()
    tmux = Tmux()
    times: list[float] = []
    try:
        start_app(tmux, home)
        tmux.wait_for("app", lambda s: selected_run(s) is not None, 60, 0.05)
        # Which way the big run is from the one selected at start.
        here = selected_run(tmux.screen("app"))
        to_big, back = ("down", "up")
        if here == big.id:
            tmux.keys("app", "down")
            tmux.wait_for("app", lambda s: selected_run(s) == other.id, 10)
            to_big, back = ("up", "down")
        elif here != other.id:
            raise SystemExit(f"run {here} selected, expected {other.id} or {big.id}")
        for _ in range(args.selects):
            t0 = time.monotonic()
            tmux.keys("app", to_big)
            seen = tmux.wait_for("app", lambda s: WORD in s, 30, 0.005)
            times.append((seen - t0) * 1000)
            tmux.keys("app", back)
            tmux.wait_for("app", lambda s: selected_run(s) == other.id and WORD not in s, 10)
            time.sleep(0.5)
        return {"select": times, "log_bytes": BIG_LOG}
    finally:
        tmux.kill_server()
        stop_home(home, [worker])


def report(res: dict) -> str:
    lines = [f"{DATE} on {machine_line()}, {code_state()}.", ""]
    lines.append("| measure | result | target |")
    lines.append("|---|---|---|")
    if "redraw" in res:
        r = res["redraw"]
        lines.append(
            f"| app CPU, selected tty run redrawing {COLS}x{ROWS} 30 times/s | "
            f"{spread(r['cpu'])} % of a core | ≤ 10 % |"
        )
        if r["lag"]:
            lines.append(
                f"| pane behind the run (capture-pane, n={len(r['lag'])}) | "
                f"p50 {percentile(r['lag'], 50):.0f} ms, p99 {percentile(r['lag'], 99):.0f} ms, "
                f"max {max(r['lag']):.0f} ms (a capture costs "
                f"{percentile(r['capture'], 50):.0f} ms) | ≤ 100 ms |"
            )
        else:
            lines.append("| pane behind the run | no T= stamp seen on screen | ≤ 100 ms |")
    if "select" in res:
        s = res["select"]["select"]
        lines.append(
            f"| key to the screen of a tty run with a 64 MiB log (n={len(s)}) | "
            f"median {percentile(s, 50):.0f} ms, max {max(s):.0f} ms | ≤ 200 ms |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", default="redraw,select")
    p.add_argument("--cpu-seconds", type=float, default=20)
    p.add_argument("--cpu-windows", type=int, default=3)
    p.add_argument("--lag-samples", type=int, default=200)
    p.add_argument("--selects", type=int, default=10)
    p.add_argument("--update-readme", action="store_true")
    args = p.parse_args()
    if not shutil.which("tmux"):
        raise SystemExit("tmux is required")
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="qqbench-tty-") as tmp:
        work = Path(tmp)
        for part in args.only.split(","):
            print(part, flush=True)
            res[part] = {"redraw": part_redraw, "select": part_select}[part](work, args)
    text = report(res)
    print(text)
    if args.update_readme:
        update_readme_section("tty view (#15)", text)


if __name__ == "__main__":
    main()
