"""Benchmark claim throughput: 8 worker processes claiming from one queue, PostgreSQL
next to SQLite in the same run.

    .venv/bin/python bench/bench_claims.py                  # print a markdown section
    .venv/bin/python bench/bench_claims.py --update-readme  # also put it in bench/README.md
    QQTUI_BENCH_PG=postgresql://user@host/db .venv/bin/python bench/bench_claims.py

Each worker is a process with its own store (PostgreSQL: its own pool), as real
workers on several hosts are. The queue is filled with one bulk INSERT before the
clock starts; the workers start together and call `Store.claim_runs` (the exact
code `qqtui worker` uses) until it returns nothing. Throughput is runs claimed /
wall time from the common start to the last worker's end. PostgreSQL runs in a
fresh schema that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_line, update_readme_section

TITLE = "Claim throughput: PostgreSQL vs SQLite"
PG_URL = os.environ.get("QQTUI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def fill_queue(url: str, n: int) -> None:
    from qqtui.core.models import runs_table
    from qqtui.core.store import Store

    store = Store.open(url, actor="bench")
    now = time.time()
    row = {
        "name": "bench",
        "agent": "default",
        "argv": ["true"],
        "cwd": "/",
        "env": {},
        "session_id": "20261122_000000_00000000",
        "status": "queued",
        "attempt": 1,
        "max_retries": 0,
        "retry_on_lost": False,
        "hung_after_s": 300.0,
        "hung": False,
        "created_at": now,
        "version": 1,
        "cancel_requested": False,
        "kill_requested": False,
        "output_bytes": 0,
    }
    with store.engine.begin() as conn:
        conn.execute(runs_table.insert(), [row] * n)
    store.close()


def claimer(url: str, worker: str, batch: int, go: Any, out: Any) -> None:
    from qqtui.core.store import Store

    store = Store.open(url, host=f"bench-{worker}", actor="bench")
    store.claim_runs(worker, 0)  # warm the import and the pool before the start
    go.wait()
    start = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on the host
    claimed = 0
    while runs := store.claim_runs(worker, batch):
        claimed += len(runs)
    out.put((claimed, start, time.monotonic()))
    store.close()


def measure(url: str, n: int, workers: int, batch: int) -> tuple[float, int]:
    """Runs claimed per second, and how many were claimed in all."""
    fill_queue(url, n)
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=claimer, args=(url, f"w{i}", batch, go, out)) for i in range(workers)
    ]
    for p in procs:
        p.start()
    time.sleep(3)  # every process imported and connected
    go.set()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(30)
    claimed = sum(r[0] for r in results)
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    if claimed != n:
        raise SystemExit(f"claimed {claimed} of {n}: the claim is broken")
    return claimed / wall, claimed


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    import psycopg

    name = f"qqbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")  # type: ignore[arg-type]
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options={quote(f'-csearch_path={name}', safe='')}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")  # type: ignore[arg-type]


def pg_settings() -> str:
    import psycopg

    with psycopg.connect(PG_URL) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        sync = conn.execute("SHOW synchronous_commit").fetchone()[0]  # type: ignore[index]
        fsync = conn.execute("SHOW fsync").fetchone()[0]  # type: ignore[index]
    return f"PostgreSQL {version} on 127.0.0.1 (fsync={fsync}, synchronous_commit={sync})"


def section(
    results: dict[tuple[str, int], list[float]], n: int, workers: int, load: tuple[float, float]
) -> str:
    lines = [
        f"`bench/bench_claims.py`, {time.strftime('%Y-%m-%d')}, {machine_line()}; {pg_settings()}, the "
        "server on the same machine; SQLite WAL file in a temp dir on the local disk. "
        f"Load average (1 min) {load[0]:.2f} at the start, {load[1]:.2f} at the end.",
        f"{workers} worker processes, {n:,} queued runs per row, `Store.claim_runs` until "
        "empty (every claim is its own committed transaction with its event rows). "
        "Medians with (min\u2013max, n) over repeats, PostgreSQL and SQLite interleaved.",
        "",
        "| backend | runs per claim call | claims/s | goal |",
        "| --- | --- | --- | --- |",
    ]
    for (backend, batch), rates in results.items():
        goal = "≥ 2,000" if backend == "PostgreSQL" else ""
        med = statistics.median(rates)
        spread = (
            f" ({min(rates):,.0f}\u2013{max(rates):,.0f}, n={len(rates)})" if len(rates) > 1 else ""
        )
        lines.append(f"| {backend} | {batch} | {med:,.0f}{spread} | {goal} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batches", default="1,8", help="runs per claim call, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    results: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):
        for batch in (int(b) for b in args.batches.split(",")):
            with pg_schema() as url:
                rate, _claimed = measure(url, args.runs, args.workers, batch)
            results.setdefault(("PostgreSQL", batch), []).append(rate)
            print(f"PostgreSQL batch {batch}: {rate:,.0f} claims/s", file=sys.stderr)
            with tempfile.TemporaryDirectory() as tmp:
                rate, _claimed = measure(
                    f"sqlite:///{tmp}/bench.db", args.runs, args.workers, batch
                )
            results.setdefault(("SQLite", batch), []).append(rate)
            print(f"SQLite batch {batch}: {rate:,.0f} claims/s", file=sys.stderr)
    text = section(results, args.runs, args.workers, (load_at_start, os.getloadavg()[0]))
    print(text)
    if args.update_readme:
        update_readme_section(TITLE, text)


if __name__ == "__main__":
    main()
