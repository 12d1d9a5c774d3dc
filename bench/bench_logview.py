"""Output view on a 1 GB log: time to the last screen, full index time, index bytes per line.

    .venv/bin/python bench/bench_logview.py                 # builds a 1 GiB log in a temp dir
    .venv/bin/python bench/bench_logview.py --path big.log  # or measures an existing file
    .venv/bin/python bench/bench_logview.py --toolong /tmp/tlvenv/bin/python

(a) last screen, core: `LogIndex` opened on the file until the last 50 lines are read
    and sanitized into Rich Text (the work the widget does for one screen);
(a') last screen, widget: `OutputView.set_path()` in a headless Textual app until its
    bottom row draws the file's last line;
(b) the background head scan (whole file) and the index memory per line after it.
Cold runs first evict the file from the page cache with posix_fadvise(DONTNEED).

With --toolong PYTHON (a Python that has `toolong` installed, e.g. a throwaway venv;
never the project venv), the same file is scanned the way toolong does it: its
backwards mmap scan yields the first batch of line breaks (the last screen) and
its Python list of offsets is measured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import tempfile
import textwrap
import time
import tracemalloc
from pathlib import Path

from rich.console import Console

from qqtui.core.logindex import LogIndex
from qqtui.tui.output_text import sanitize_line

SCREEN_LINES = 50
GIB = 1024**3


def build_log(path: Path, size: int) -> int:
    """Write `size` bytes of plausible agent output (some lines coloured); returns lines."""
    levels = ["INFO", "DEBUG", "\x1b[33mWARN\x1b[0m", "\x1b[31mERROR\x1b[0m"]
    blocks = []
    for variant in range(4):
        lines = [
            f"2026-11-22T06:{i % 60:02d}:{(i * 7) % 60:02d}.{i % 1000:03d}Z "
            f"{levels[(i + variant) % 4]} worker-{i % 16} step {i}: "
            f"{'tool call finished ' * (1 + (i * 13 + variant) % 5)}\n"
            for i in range(70_000)
        ]
        blocks.append("".join(lines).encode())
    written = lines_written = 0
    with path.open("wb") as f:
        i = 0
        while written < size:
            block = blocks[i % 4]
            if len(block) > size - written:
                block = block[: block.rfind(b"\n", 0, size - written) + 1]
                if not block:
                    break
            f.write(block)
            written += len(block)
            lines_written += block.count(b"\n")
            i += 1
        f.write(b"the very last line of the log\n")
        lines_written += 1
    return lines_written


def evict(path: Path) -> None:
    """Drop the file from the page cache so the next read comes from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def last_screen_core(path: Path) -> float:
    """Seconds from opening the index to the last screen sanitized into Text."""
    console = Console(width=100, file=open(os.devnull, "w"))  # noqa: SIM115
    started = time.perf_counter()
    with LogIndex(path) as index:
        index.refresh()
        count = index.line_count
        lines = index.read_raw_lines(count - SCREEN_LINES, SCREEN_LINES)
        for raw in lines:
            text = sanitize_line(raw)
            list(text.render(console))
        elapsed = time.perf_counter() - started
        assert lines[-1] == b"the very last line of the log", lines[-1]
    return elapsed


def last_screen_widget(path: Path, total_lines: int) -> tuple[float, float]:
    """Seconds from `OutputView.set_path()` until the bottom row shows the last line,
    and until the background head scan is merged (every line numbered)."""
    from textual.app import App, ComposeResult

    from qqtui.tui.widgets.output_view import OutputView

    class Bench(App[None]):
        def compose(self) -> ComposeResult:
            yield OutputView(None)

    async def run() -> tuple[float, float]:
        app = Bench()
        async with app.run_test(size=(120, SCREEN_LINES)) as pilot:
            view = app.query_one(OutputView)
            await pilot.pause()
            started = time.perf_counter()
            view.set_path(path)
            bottom = view.size.height - 1
            while view.render_line(bottom).text.strip() != "the very last line of the log":
                if time.perf_counter() - started > 30:
                    raise RuntimeError("last line never showed")
                await asyncio.sleep(0.002)
            shown = time.perf_counter() - started
            while view.line_count != total_lines:
                if time.perf_counter() - started > 120:
                    raise RuntimeError("head scan never merged")
                await asyncio.sleep(0.01)
            return shown, time.perf_counter() - started

    return asyncio.run(run())


def full_index(path: Path) -> dict[str, float]:
    started = time.perf_counter()
    with LogIndex(path) as index:
        index.refresh()
        index.scan_head()
        index.merge_head()
        elapsed = time.perf_counter() - started
        lines = index.line_count
        nbytes = index.index_nbytes
    return {
        "seconds": elapsed,
        "lines": lines,
        "index_bytes": nbytes,
        "bytes_per_line": nbytes / lines,
    }


TOOLONG_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, time
    from toolong.log_file import LogFile
    started = time.perf_counter()
    log = LogFile(sys.argv[1])
    log.open(threading.Event())
    breaks = []
    first = None
    # toolong's LogLines.on_new_breaks: extend the list, then sort (not tailing).
    for _position, batch in log.scan_line_breaks():
        if first is None and batch:
            first = time.perf_counter() - started
        breaks.extend(batch)
        breaks.sort()
    total = time.perf_counter() - started
    nbytes = sys.getsizeof(breaks) + sum(sys.getsizeof(b) for b in breaks)
    print(json.dumps({"first_batch": first, "seconds": total, "lines": len(breaks),
                      "bytes_per_line": nbytes / len(breaks)}))
    """
)


def toolong(python: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [python, "-c", TOOLONG_SCRIPT, str(path)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", type=Path, help="measure this log instead of building one")
    parser.add_argument("--size-gb", type=float, default=1.0, help="size of the built log (GiB)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--toolong", help="a Python interpreter with toolong installed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="qqtui-bench-") as tmp:
        path = args.path
        if path is None:
            path = Path(tmp) / "big.log"
            started = time.perf_counter()
            lines = build_log(path, int(args.size_gb * GIB))
            print(
                f"built {path.stat().st_size / GIB:.2f} GiB, {lines:,} lines "
                f"in {time.perf_counter() - started:.1f} s"
            )
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}"
        )

        evict(path)
        index = full_index(path)
        print(
            f"(b)  full index (cold cache): {index['seconds']:.2f} s, {index['lines']:,} lines, "
            f"{index['bytes_per_line']:.3f} bytes/line ({index['index_bytes'] / 2**20:.1f} MiB)"
        )
        tracemalloc.start()
        full_index(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"(b)  peak Python allocations while indexing: {peak / 2**20:.1f} MiB")
        warm_index = full_index(path)
        print(f"(b)  full index (warm cache): {warm_index['seconds']:.2f} s")

        warm = [last_screen_core(path) for _ in range(args.runs)]
        cold = []
        for _ in range(args.runs):
            evict(path)
            cold.append(last_screen_core(path))
        widget_runs = [last_screen_widget(path, index["lines"]) for _ in range(args.runs)]
        widget = [shown for shown, _ in widget_runs]
        merged = [full for _, full in widget_runs]
        ms = lambda xs: f"median {statistics.median(xs) * 1000:.1f} ms, max {max(xs) * 1000:.1f} ms"  # noqa: E731
        print(f"(a)  last screen, core, warm cache: {ms(warm)}")
        print(f"(a)  last screen, core, cold cache: {ms(cold)}")
        print(f"(a') last screen, OutputView, warm: {ms(widget)}")
        print(f"(b') OutputView, all lines numbered: median {statistics.median(merged):.2f} s")

        if args.toolong:
            evict(path)
            tl_cold = toolong(args.toolong, path)
            tl = toolong(args.toolong, path)
            print(
                f"toolong 1.5 scan, cold: last screen {tl_cold['first_batch'] * 1000:.0f} ms, "
                f"full {tl_cold['seconds']:.2f} s"
            )
            print(
                f"toolong 1.5 scan, warm: last screen {tl['first_batch'] * 1000:.0f} ms, "
                f"full {tl['seconds']:.2f} s, {tl['lines']:,} breaks, "
                f"{tl['bytes_per_line']:.1f} bytes/line"
            )
        else:
            print("toolong: not compared (pass --toolong PYTHON with toolong installed)")


if __name__ == "__main__":
    main()
