"""Process control with real process trees: escapees, TERM-ignorers, PID reuse."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from qqtui.core.procs.kill import TreeKill, kill_tree
from qqtui.core.procs.pids import RunTarget, is_alive, signal_verified
from qqtui.core.procs.scan import ProcessTable
from qqtui.core.procs.spawn import RunEnvironment, Spawned, SpawnError, spawn_run, start_run

from ..conftest import wait_for

# A run that hides processes the ways real agents do: a child that escapes with
# setsid, a grandchild double-forked away from its parent, and a child that
# ignores SIGTERM. It writes their pids to pids.json and waits.
TREE = r"""
import json, os, signal, subprocess, sys, time
out = sys.argv[1]
escapee = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
r, w = os.pipe()
if os.fork() == 0:  # double fork: the grandchild is orphaned onto the subreaper
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode()); os.close(w)
        time.sleep(300); os._exit(0)
    os._exit(0)
os.close(w)
grandchild = int(os.read(r, 32))
os.wait()
stubborn = subprocess.Popen([sys.executable, "-c",
    "import signal, time, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('armed', flush=True); time.sleep(300)"], stdout=subprocess.PIPE, text=True)
stubborn.stdout.readline()
tmp = out + ".tmp"
with open(tmp, "w") as fh:
    json.dump({"escapee": escapee.pid, "grandchild": grandchild, "stubborn": stubborn.pid}, fh)
os.replace(tmp, out)
time.sleep(300)
"""


def start(tmp_path: Path, argv: list[str], run_id: int = 1) -> tuple[Spawned, RunTarget]:
    env = RunEnvironment(run_id, tmp_path, "sid", tmp_path, tmp_path / "hb")
    spawned = spawn_run(
        run_env=env,
        argv=argv,
        cwd=str(tmp_path),
        env_overrides={},
        log_path=tmp_path / f"out-{run_id}.log",
        status_path=tmp_path / f"status-{run_id}.json",
    )
    target = RunTarget(
        run_id=run_id,
        home=tmp_path,
        attempt=1,
        pid=spawned.pid,
        pid_create_time=spawned.pid_create_time,
        pgid=spawned.pgid,
        shim_pid=spawned.shim.pid,
        shim_create_time=spawned.shim_create_time,
    )
    return spawned, target


def wait_exit(spawned: Spawned, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while spawned.exit_report is None:
        assert time.monotonic() < deadline, "no exit report"
        select.select([spawned.report_fd], [], [], 0.2)
        if spawned.read_reports():
            break
    spawned.close()
    spawned.shim.wait(10)
    return spawned.exit_report or {}


def test_spawn_reports_pid_env_output_and_true_exit(tmp_path: Path) -> None:
    spawned, _target = start(
        tmp_path, ["sh", "-c", 'echo "$QQ_RUN_ID:$QQ_HOME"; echo err >&2; exit 7']
    )
    assert spawned.pgid == spawned.pid and spawned.shim.pid != spawned.pid
    assert wait_exit(spawned) == {"exit_code": 7, "signal": None, "leftovers": False}
    assert (tmp_path / "out-1.log").read_text() == f"1:{tmp_path}\nerr\n"
    status = json.loads((tmp_path / "status-1.json").read_text())
    assert status["exit_code"] == 7 and status["pid"] == spawned.pid
    assert oct((tmp_path / "out-1.log").stat().st_mode & 0o777) == "0o600"


def test_argv_is_never_passed_through_a_shell(tmp_path: Path) -> None:
    spawned, _ = start(tmp_path, ["echo", "$HOME; rm -rf /tmp/x", "`id`"])
    wait_exit(spawned)
    assert (tmp_path / "out-1.log").read_text() == "$HOME; rm -rf /tmp/x `id`\n"


def test_spawn_error_is_reported_not_raised_as_crash(tmp_path: Path) -> None:
    with pytest.raises(SpawnError, match="cannot execute 'no-such-binary-xyz'"):
        start(tmp_path, ["no-such-binary-xyz"])
    script = tmp_path / "noexec.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(SpawnError, match="Permission denied"):
        start(tmp_path, [str(script)])


def test_output_is_capped_with_a_visible_marker(tmp_path: Path) -> None:
    env = RunEnvironment(1, tmp_path, "sid", tmp_path, tmp_path / "hb")
    spawned = spawn_run(
        run_env=env,
        argv=[sys.executable, "-c", "import sys; sys.stdout.write('y' * 3_000_000)"],
        cwd=str(tmp_path),
        env_overrides={},
        log_path=tmp_path / "out.log",
        status_path=tmp_path / "status.json",
        log_cap=100_000,
    )
    assert wait_exit(spawned)["exit_code"] == 0
    data = (tmp_path / "out.log").read_bytes()
    assert data.startswith(b"y" * 100_000)
    assert b"[qqtui] output truncated" in data
    assert data.rstrip().endswith(b"[qqtui] 2900000 bytes of output were discarded")
    assert len(data) < 100_000 + 300


def test_kill_tree_catches_escapees_and_outlasts_sigterm_ignorers(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids.json"
    spawned, target = start(tmp_path, [sys.executable, "-c", TREE, str(pids_file)])
    wait_for(pids_file.exists, 15, what="the tree to start")
    pids = json.loads(pids_file.read_text())
    victims = [psutil.Process(p) for p in (spawned.pid, *pids.values())]
    assert os.getsid(pids["escapee"]) != os.getsid(spawned.pid)  # really escaped
    assert psutil.Process(pids["grandchild"]).ppid() == spawned.shim.pid  # reparented to the shim

    killer = TreeKill(target, grace_s=1.0)
    assert killer.start(time.monotonic()) >= 4
    # TERM takes the escapee down in its own time: wait for that, not a fixed while.
    escapee_created = victims[1].create_time()
    wait_for(lambda: not is_alive(pids["escapee"], escapee_created), 10, what="the escapee to die")
    assert psutil.pid_exists(pids["stubborn"])  # ignored TERM, not yet killed
    # The shim decides "leftovers" as it reaps the command: let it record the command's
    # end before finish() kills the stubborn child, or it may find nothing left.
    status = tmp_path / "status-1.json"
    wait_for(
        lambda: "finished_at" in json.loads(status.read_text() or "{}"),
        10,
        what="the shim to record the command's end",
    )
    assert killer.finish() == []
    for proc in victims:
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    report = wait_exit(spawned)
    assert report["signal"] == signal.SIGTERM  # the command itself died of TERM
    assert report["leftovers"] is True  # its children were still dying when it ended
    assert spawned.shim.returncode == 0  # the shim survived to record it


def test_blocking_kill_tree_with_zero_grace_kills_at_once(tmp_path: Path) -> None:
    spawned, target = start(tmp_path, ["sleep", "300"])
    assert kill_tree(target, grace_s=0) == []
    assert wait_exit(spawned)["signal"] == signal.SIGKILL


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    # An unrelated process that happens to hold the pid (and group) a run once had.
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        real = psutil.Process(bystander.pid).create_time()
        stale = real - 100.0
        assert not signal_verified(bystander.pid, stale, signal.SIGKILL)
        target = RunTarget(
            run_id=99,
            home=tmp_path,
            attempt=1,
            pid=bystander.pid,
            pid_create_time=stale,
            pgid=bystander.pid,
            shim_pid=None,
            shim_create_time=None,
        )
        assert kill_tree(target, grace_s=0) == []
        time.sleep(0.2)
        assert bystander.poll() is None  # still alive
        assert signal_verified(bystander.pid, real, signal.SIGKILL)  # the right identity works
        assert bystander.wait(5) == -signal.SIGKILL
    finally:
        if bystander.poll() is None:
            bystander.kill()
            bystander.wait()


def test_env_tag_matches_only_this_home_and_attempt(tmp_path: Path) -> None:
    other_home = tmp_path / "other"
    other_home.mkdir()
    env = {**os.environ, "QQ_RUN_ID": "1", "QQ_HOME": str(other_home), "QQ_ATTEMPT": "1"}
    same_id_other_home = subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)
    try:
        spawned, target = start(tmp_path, ["sleep", "300"])
        kill_tree(target, grace_s=0)
        wait_exit(spawned)
        time.sleep(0.2)
        assert same_id_other_home.poll() is None
    finally:
        same_id_other_home.kill()
        same_id_other_home.wait()


def test_process_table_builds_each_runs_tree_in_one_pass(tmp_path: Path) -> None:
    script = "import subprocess, sys, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    a, ta = start(tmp_path, [sys.executable, "-c", script], run_id=1)
    b, tb = start(tmp_path, ["sleep", "300"], run_id=2)
    try:
        table = ProcessTable()
        trees = wait_for(
            lambda: (t := table.scan([ta, tb])) and t[1].count == 2 and t,
            10,
            what="both processes of run 1",
        )
        assert trees[1].procs[1].name == "sleep"
        assert trees[1].procs[0].pid == a.pid and trees[1].procs[1].depth == 1
        assert [p.pid for p in trees[2].procs] == [b.pid]
        assert trees[1].rss > 0
        # A caller may pause a scan between pieces of its work (the app does, for keys):
        # at least once per run's tree, and the same trees come out.
        pauses: list[float] = []
        again = table.scan([ta, tb], checkpoint=lambda: pauses.append(time.monotonic()))
        assert len(pauses) >= 3
        assert [p.pid for p in again[1].procs] == [p.pid for p in trees[1].procs]
    finally:
        for t, s in ((ta, a), (tb, b)):
            kill_tree(t, 0)
            wait_exit(s)


def test_process_table_reports_what_psutil_reports(tmp_path: Path) -> None:
    """The table reads /proc itself; each field must still be psutil's (sleep is steady)."""
    long_name = tmp_path / "a-very-long-program-name"
    long_name.symlink_to(shutil.which("sleep"))
    script = (
        f"import subprocess, time; subprocess.Popen([{str(long_name)!r}, '300']); time.sleep(300)"
    )
    spawned, target = start(tmp_path, [sys.executable, "-c", script])
    try:
        table = ProcessTable()
        wait_for(lambda: table.scan([target])[1].count == 2, 10, what="the child")
        # Both read at once must agree, so first let both settle into their sleep: a
        # process seen in the instant it is still starting up is "running" to one read
        # and "sleeping" to the next.
        wait_for(
            lambda: all(
                psutil.Process(p.pid).status() == psutil.STATUS_SLEEPING
                for p in table.scan([target])[1].procs
            ),
            10,
            what="both processes asleep",
        )
        tree = table.scan([target])[1]
        assert tree.count == 2
        for info in tree.procs:
            proc = psutil.Process(info.pid)
            with proc.oneshot():
                assert info.ppid == proc.ppid()
                assert info.name == proc.name()
                assert info.cmdline == tuple(proc.cmdline())
                assert info.status == proc.status()
                assert abs(info.create_time - proc.create_time()) < 0.01
        child = tree.procs[1]
        assert child.name == "a-very-long-program-name"  # not the kernel's 15-byte cut
        assert child.rss == psutil.Process(child.pid).memory_info().rss
        assert child.cpu_percent == 0.0  # first sight: no earlier sample to compare with
    finally:
        kill_tree(target, 0)
        wait_exit(spawned)


def test_process_table_finds_a_tree_it_skipped_while_it_was_no_runs(tmp_path: Path) -> None:
    """Processes outside every tree are not re-read while their pids cannot have been
    reused: a run whose processes were skipped that way still gets its whole tree, and
    a child started later shows up."""
    flag = tmp_path / "fork-now"
    script = (
        "import os, subprocess, time\n"
        "subprocess.Popen(['sleep', '300'])\n"
        f"while not os.path.exists({str(flag)!r}):\n"
        "    time.sleep(0.02)\n"
        "subprocess.Popen(['sleep', '301'])\n"
        "time.sleep(300)\n"
    )
    spawned, target = start(tmp_path, [sys.executable, "-c", script])
    try:
        table = ProcessTable()
        wait_for(lambda: len(psutil.Process(spawned.pid).children()) == 1, 10, what="child")
        for _ in range(3):
            assert table.scan([]) == {}  # the run's processes are outside every tree
        tree = table.scan([target])[1]
        assert [p.cmdline[-1] for p in tree.procs][1:] == ["300"]
        assert tree.procs[0].pid == spawned.pid and tree.procs[1].depth == 1
        flag.touch()
        tree = wait_for(
            lambda: (t := table.scan([target])[1]).count == 3 and t, 10, what="the new child"
        )
        assert sorted(p.cmdline[-1] for p in tree.procs[1:]) == ["300", "301"]
    finally:
        kill_tree(target, 0)
        wait_exit(spawned)


def test_process_table_cpu_percent_and_a_command_line_changed_by_exec(tmp_path: Path) -> None:
    """A busy process shows CPU; when it execs (same pid, same start time) the cached
    command line and name are replaced at the next scan."""
    flag = tmp_path / "exec-now"
    script = (
        "import os, time\n"
        f"while not os.path.exists({str(flag)!r}):\n"
        "    sum(range(10000))\n"
        "os.execvp('sleep', ['sleep', '300'])\n"
    )
    spawned, target = start(tmp_path, [sys.executable, "-c", script])
    try:
        table = ProcessTable()
        first = table.scan([target])[1].procs[0]
        assert first.cpu_percent == 0.0 and first.cmdline[0] == sys.executable
        # Each scan measures the CPU used since the one before: half-second samples, as
        # many as it takes (up to 10 s) for a crowded machine to give the loop its share.
        deadline = time.monotonic() + 10
        while True:
            time.sleep(0.5)
            busy = table.scan([target])[1].procs[0]
            if busy.cpu_percent > 10 or time.monotonic() > deadline:
                break
        assert busy.cpu_percent > 10  # a spinning loop, even on a crowded machine
        flag.touch()
        after = wait_for(
            lambda: (p := table.scan([target])[1].procs[0]).name == "sleep" and p,
            10,
            what="the exec to show",
        )
        assert after.pid == first.pid and after.cmdline == ("sleep", "300")
        time.sleep(0.3)
        assert table.scan([target])[1].procs[0].cpu_percent < 5
    finally:
        kill_tree(target, 0)
        wait_exit(spawned)


def test_a_thousand_short_runs_leave_no_zombies_or_open_fds(tmp_path: Path) -> None:
    me = psutil.Process()
    fds_before = me.num_fds()
    shim_pids: set[int] = set()
    for batch in range(125):  # eight at a time, as a worker with -j 8 would
        started = []
        for i in range(8):
            run_id = batch * 8 + i
            env = RunEnvironment(run_id, tmp_path, "sid", tmp_path, tmp_path / "hb")
            started.append(
                start_run(
                    run_env=env,
                    argv=["true"],
                    cwd=str(tmp_path),
                    env_overrides={},
                    log_path=tmp_path / f"out-{i}.log",
                    status_path=tmp_path / f"st-{i}.json",
                )
            )
        for spawned in started:
            shim_pids.add(spawned.shim.pid)
            spawned.wait_started()
            assert wait_exit(spawned)["exit_code"] == 0
    assert me.num_fds() == fds_before
    # Only this test's processes: other tests in this process may leave their own.
    left = [c for c in me.children(recursive=True) if c.pid in shim_pids]
    assert left == []  # every shim reaped (a zombie would still be listed)
    assert len(shim_pids) == 1000
