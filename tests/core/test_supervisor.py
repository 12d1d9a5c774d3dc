"""The supervisor with real `qqtui worker` processes, real runs and a real SQLite file."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from qqtui.core.records import Status
from qqtui.core.runspec import RunSpec
from qqtui.core.snapshot import Snapshot

from ..conftest import Workers, wait_for, wait_for_status


def add(qq, *args: str) -> int:  # type: ignore[no-untyped-def]
    proc = qq("add", *args, check=True)
    return int(proc.stdout.strip())


def kinds(db_url: str, run_id: int) -> list[str]:
    return [e.kind for e in Snapshot(db_url).events(run_id)]


STRESS_RUNS = int(os.environ.get("QQTUI_STRESS_RUNS", "2000"))


@pytest.mark.slow
def test_many_workers_run_every_attempt_exactly_once(
    tmp_path: Path,
    home: Path,
    store,
    db_url: str,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    ledger = tmp_path / "ledger.txt"
    from qqtui.core.intents import submit_run

    sid = None
    for _ in range(STRESS_RUNS):
        run = submit_run(
            store,
            home,
            RunSpec(
                ["sh", "-c", f'echo "$QQ_RUN_ID" >> {ledger}'],
                session_id=sid,
                shared_workspace=True,  # one directory, all in parallel: the queue is measured
            ),
        )
        sid = run.session_id  # one session, so the test measures the queue, not mkdir
    procs = [workers.start("-j", "4", "--until-idle") for _ in range(8)]
    for proc in procs:
        assert proc.wait(timeout=600) == 0
    counts = Counter(ledger.read_text().split())
    assert len(counts) == STRESS_RUNS
    assert set(counts.values()) == {1}, [k for k, v in counts.items() if v > 1][:10]
    runs = Snapshot(db_url).runs()
    assert {r.status for r in runs} == {Status.SUCCEEDED}
    assert len({r.worker_id for r in runs}) > 1  # the work really was shared


def test_crashed_worker_runs_are_adopted_or_finalized_with_true_exit_codes(
    tmp_path: Path,
    home: Path,
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    ledger = tmp_path / "ledger.txt"
    # Both run at once in one directory, so they share it explicitly.
    shared = "--shared-workspace"
    survivor = add(
        qq, shared, "--", "sh", "-c", f"echo start-$QQ_RUN_ID >> {ledger}; sleep 4; exit 5"
    )
    ended_alone = add(
        qq, shared, "--", "sh", "-c", f"echo start-$QQ_RUN_ID >> {ledger}; sleep 0.5; exit 4"
    )
    first = workers.start("-j", "4")
    wait_for(
        lambda: ledger.exists() and len(ledger.read_text().split()) == 2, 20, what="both started"
    )
    # The shim starts the command before the worker records its pid: wait for both pids,
    # so the crash below is of a worker that knew what it ran.
    for run_id in (survivor, ended_alone):
        wait_for(lambda r=run_id: Snapshot(db_url).run(r).pid, 10, what=f"run {run_id}'s pid")  # type: ignore[union-attr, misc]
    before = Snapshot(db_url).run(survivor)
    assert before is not None and before.pid
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(1.5)  # `ended_alone` finishes while no worker is alive
    assert psutil.pid_exists(before.pid)  # the run outlived its supervisor
    assert Snapshot(db_url).run(ended_alone).status is Status.RUNNING  # type: ignore[union-attr]

    workers.start("-j", "4")
    done = wait_for_status(db_url, ended_alone, {"failed"}, 20)
    assert done.exit_code == 4 and "ended while worker" in (done.reason or "")
    adopted = wait_for_status(db_url, survivor, {"failed"}, 20)
    assert adopted.exit_code == 5
    assert "adopted" in kinds(db_url, survivor)
    assert sorted(ledger.read_text().split()) == sorted(
        [f"start-{ended_alone}", f"start-{survivor}"]
    )


def test_graceful_worker_stop_leaves_runs_for_the_next_worker(
    home: Path,
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    run_id = add(qq, "--", "sh", "-c", "sleep 2; exit 3")
    first = workers.start()
    running = wait_for_status(db_url, run_id, {"running"})
    wait_for(lambda: Snapshot(db_url).run(run_id).pid, 10)  # type: ignore[union-attr]
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=10) == 0
    pid = Snapshot(db_url).run(run_id).pid  # type: ignore[union-attr]
    assert pid and psutil.pid_exists(pid)
    assert running.status is Status.RUNNING
    workers.start()
    done = wait_for_status(db_url, run_id, {"failed"}, 20)
    assert done.exit_code == 3


def test_stop_runs_terminates_runs_on_worker_exit(
    home: Path,
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    run_id = add(qq, "--", "sleep", "60")
    proc = workers.start("--stop-runs", "--grace", "1")
    wait_for(lambda: Snapshot(db_url).run(run_id).pid, 10)  # type: ignore[union-attr]
    pid = Snapshot(db_url).run(run_id).pid  # type: ignore[union-attr]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    run = Snapshot(db_url).run(run_id)
    assert (
        run is not None and run.status is Status.CANCELLED and "--stop-runs" in (run.reason or "")
    )
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_timeout_kills_the_tree_even_when_sigterm_is_ignored(
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    ignore = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    run_id = add(qq, "--timeout", "1", "--", sys.executable, "-c", ignore)
    workers.start("--grace", "1")
    run = wait_for_status(db_url, run_id, {"timed_out"}, 20)
    assert run.signal == signal.SIGKILL and run.reason == "timed out after 1s"
    assert run.finished_at is not None and run.started_at is not None
    assert 1.9 <= run.finished_at - run.started_at < 10
    assert "stopping" in kinds(db_url, run_id)


def test_failed_run_is_retried_with_backoff_then_fails_with_a_reason(
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    run_id = add(qq, "--retries", "2", "--", "sh", "-c", "echo attempt $QQ_ATTEMPT; exit 9")
    workers.start("--retry-base", "0.4")
    run = wait_for_status(db_url, run_id, {"failed"}, 30)
    assert run.attempt == 3 and run.exit_code == 9 and run.reason == "exit 9"
    events = Snapshot(db_url).events(run_id)
    requeues = [e for e in events if e.to_status == "queued" and e.from_status == "running"]
    claims = [e for e in events if e.to_status == "running"]
    assert [e.reason.split(";")[1].strip().split(" in ")[0] for e in requeues] == [  # type: ignore[union-attr]
        "retry 1 of 2",
        "retry 2 of 2",
    ]
    gaps = [claims[i + 1].at - requeues[i].at for i in range(2)]
    assert gaps[0] >= 0.2 - 0.05 and gaps[1] >= 0.4 - 0.05  # base * 2^n * jitter(0.5..1)


def test_hung_is_flagged_once_and_cleared_when_activity_resumes(
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    # Quiet for 2.5 s against a 1 s threshold, then output, then 0.6 s more: long
    # enough for the flag to be seen cleared, short of being hung again (a second
    # second of silence raced the run's end and flagged it twice on a slow machine).
    quiet_then_talk = "sleep 2.5; echo back; sleep 0.6"
    run_id = add(qq, "--hung-after", "1", "--", "sh", "-c", quiet_then_talk)
    heartbeating = add(
        qq,
        "--hung-after",
        "1",
        "--",
        "sh",
        "-c",
        'for i in 1 2 3 4 5 6 7 8 9 10; do touch "$QQ_HEARTBEAT_FILE"; sleep 0.3; done',
    )
    workers.start()
    wait_for(lambda: Snapshot(db_url).run(run_id).hung, 10, what="hung flag")  # type: ignore[union-attr]
    wait_for_status(db_url, run_id, {"succeeded"}, 20)
    assert kinds(db_url, run_id).count("hung") == 1
    assert "unhung" in kinds(db_url, run_id)
    wait_for_status(db_url, heartbeating, {"succeeded"}, 20)
    assert "hung" not in kinds(db_url, heartbeating)  # heartbeats count as activity


def test_cancel_and_kill_requested_from_another_process(
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    ignore = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    shared = "--shared-workspace"  # two run at once in one directory
    cancelled = add(qq, shared, "--", sys.executable, "-c", ignore)
    killed = add(qq, shared, "--", "sleep", "60")
    queued = add(qq, shared, "--", "sleep", "60")
    workers.start("-j", "2")
    wait_for(lambda: Snapshot(db_url).run(killed).pid, 10)  # type: ignore[union-attr]
    wait_for(lambda: Snapshot(db_url).run(cancelled).pid, 10)  # type: ignore[union-attr]
    t0 = time.time()
    assert "cancel requested" in qq("cancel", str(cancelled), "--grace", "1", check=True).stdout
    assert "kill requested" in qq("kill", str(killed), check=True).stdout
    k = wait_for_status(db_url, killed, {"cancelled"}, 10)
    assert k.signal == signal.SIGKILL and k.reason == "killed by user (killed by SIGKILL)"
    [asked] = [e.at for e in Snapshot(db_url).events(killed) if e.kind == "kill_requested"]
    assert k.finished_at is not None and k.finished_at - asked < 1.0  # within a poll, no grace
    c = wait_for_status(db_url, cancelled, {"cancelled"}, 10)
    assert c.signal == signal.SIGKILL  # ignored TERM, so KILL after the grace
    assert c.finished_at is not None and c.finished_at - t0 >= 0.9
    wait_for_status(db_url, queued, {"running"}, 10)
    assert qq("kill", str(queued), check=True).returncode == 0
    wait_for_status(db_url, queued, {"cancelled"}, 10)


def test_output_cap_is_enforced_and_recorded(
    home: Path,
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    flood = "import sys\nfor i in range(20000): sys.stdout.write('line %d %s\\n' % (i, 'x' * 90))"
    run_id = add(qq, "--", sys.executable, "-c", flood)
    workers.start("--log-cap", "65536")
    run = wait_for_status(db_url, run_id, {"succeeded"}, 20)
    log = qq("logs", str(run_id), check=True).stdout
    assert "[qqtui] output truncated" in log and len(log) < 70_000
    assert "output_truncated" in kinds(db_url, run_id)
    assert run.output_bytes >= 65536


def test_spawn_failure_becomes_a_failed_run_with_the_reason(
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    run_id = add(qq, "--", "definitely-not-a-command-qq")
    workers.start()
    run = wait_for_status(db_url, run_id, {"failed"}, 10)
    assert run.reason == "cannot execute 'definitely-not-a-command-qq': No such file or directory"


def test_run_environment_contract(home: Path, db_url: str, qq, workers: Workers) -> None:  # type: ignore[no-untyped-def]
    dump = "import json, os; print(json.dumps({k: v for k, v in os.environ.items() if k.startswith('QQ_') or k == 'EXTRA'}))"
    run_id = add(qq, "--env", "EXTRA=yes", "--agent", "bot", "--", sys.executable, "-c", dump)
    workers.start()
    run = wait_for_status(db_url, run_id, {"succeeded"}, 10)
    env = json.loads(qq("logs", str(run_id), check=True).stdout)
    session_dir = home / "bot" / "sessions" / run.session_id
    assert env == {
        "QQ_HOME": str(home),
        "QQ_SESSION_ID": run.session_id,
        "QQ_SESSION_DIR": str(session_dir),
        "QQ_RUN_ID": str(run_id),
        "QQ_HEARTBEAT_FILE": str(session_dir / "runs" / str(run_id) / "heartbeat"),
        "QQ_ATTEMPT": "1",
        "QQ_ARTIFACTS_DIR": str(session_dir / "runs" / str(run_id) / "artifacts"),
        "EXTRA": "yes",
    }
    meta = json.loads((session_dir / "meta.json").read_text())
    assert meta["last_argv"] == list(run.argv) and meta["runs"][0]["run_id"] == run_id
