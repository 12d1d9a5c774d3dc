"""Workspace isolation with real git repositories, real workers and a real SQLite file:
worktrees per run, cleanup, resume, errors before queueing, run-scoped artifacts, and
declared locks that never let conflicting runs overlap."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from qqtui.core.intents import submit_run
from qqtui.core.records import Status
from qqtui.core.runspec import RunSpec
from qqtui.core.snapshot import Snapshot
from qqtui.core.store import Store

from ..conftest import Workers, wait_for, wait_for_status

FINAL = {"succeeded", "failed", "cancelled", "timed_out", "lost"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "qq@example.invalid")
    git(repo, "config", "user.name", "qq test")
    (repo / "README").write_text("original\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


def add(qq, *args: str) -> int:  # type: ignore[no-untyped-def]
    return int(qq("add", *args, check=True).stdout.strip())


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qqtui: error: "), proc.stderr
    return lines[0]


def branches(repo: Path) -> set[str]:
    return set(git(repo, "branch", "--list", "qqtui/*", "--format=%(refname:short)").split())


def test_a_runs_commit_stays_on_its_branch_and_its_worktree_follows_the_outcome(
    tmp_path: Path, home: Path, db_url: str, qq, workers: Workers
) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(tmp_path)
    main_head = git(repo, "rev-parse", "HEAD")
    work = (
        "echo changed > README && echo new > new.txt && git add -A && "
        "git commit -q -m 'run work' && git rev-parse HEAD > \"$QQ_ARTIFACTS_DIR/head\" && "
        'mkdir -p "$QQ_ARTIFACTS_DIR/sub" && echo 12345 > "$QQ_ARTIFACTS_DIR/sub/x"'
    )
    ok = add(qq, "--worktree", "--cwd", str(repo), "--", "sh", "-c", work)
    bad = add(qq, "--worktree", "--repo", str(repo), "--", "sh", "-c", "echo wip > wip.txt; exit 3")
    kept = add(qq, "--worktree", "--repo", str(repo), "--keep-worktree", "--", "true")
    workers.start("-j", "4")
    for run_id in (ok, bad, kept):
        wait_for_status(db_url, run_id, FINAL, 30)
    runs = {r.id: r for r in Snapshot(db_url).runs()}
    assert [runs[i].status for i in (ok, bad, kept)] == [
        Status.SUCCEEDED,
        Status.FAILED,
        Status.SUCCEEDED,
    ]
    wt = {i: home / "workspaces" / str(i) for i in (ok, bad, kept)}
    assert runs[ok].cwd == str(wt[ok]) and runs[ok].worktree_branch == f"qqtui/{ok}"

    # The main checkout never saw any of it.
    assert git(repo, "rev-parse", "HEAD") == main_head
    assert git(repo, "branch", "--show-current") == "main"
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "README").read_text() == "original\n" and not (repo / "new.txt").exists()
    show = json.loads(qq("show", str(ok), "--json", check=True).stdout)
    run_commit = (Path(show["artifacts_dir"]) / "head").read_text().strip()
    assert run_commit != main_head
    assert git(repo, "branch", "--contains", run_commit, "--format=%(refname:short)") == (
        f"qqtui/{ok}"
    )
    assert git(repo, "show", f"qqtui/{ok}:new.txt") == "new"

    # Success: worktree gone, branch kept; failure and --keep-worktree: worktree kept.
    wait_for(lambda: not wt[ok].exists(), 10, what="the worktree to be removed")
    assert f"qqtui/{ok}" in branches(repo)
    assert (wt[bad] / "wip.txt").read_text() == "wip\n"
    assert (wt[kept] / "README").exists()
    assert {a["name"]: a["size"] for a in show["artifacts"]} == {"head": 41, "sub/x": 6}
    text = qq("show", str(ok), check=True).stdout
    assert "sub/x" in text and f"qqtui/{ok} in {repo}" in text

    listed = {w["run_id"]: w for w in json.loads(qq("worktrees", "--json", check=True).stdout)}
    assert {i: listed[i]["state"] for i in listed} == {ok: "removed", bad: "dirty", kept: "clean"}
    assert listed[bad]["status"] == "failed" and listed[bad]["size"] > 0
    assert listed[kept]["branch"] == f"qqtui/{kept}" and listed[kept]["path"] == str(wt[kept])
    assert f"qqtui/{bad}" in qq("worktrees", check=True).stdout


def test_clean_removes_finished_worktrees_and_branches_as_documented(
    tmp_path: Path, home: Path, db_url: str, qq, workers: Workers
) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(tmp_path)
    r = ("--worktree", "--repo", str(repo))
    unmerged = add(qq, *r, "--", "sh", "-c", "echo a > a && git add a && git commit -qm a")
    merged = add(qq, *r, "--keep-worktree", "--", "true")  # its branch is main's HEAD
    dirty = add(qq, *r, "--", "sh", "-c", "echo x > dirty.txt; exit 1")
    blocker = add(qq, *r, "--", "sleep", "30")  # still running: never touched
    workers.start("-j", "4")
    for run_id in (unmerged, merged, dirty):
        wait_for_status(db_url, run_id, FINAL, 30)
    wait_for_status(db_url, blocker, {"running"}, 30)
    wt = {i: home / "workspaces" / str(i) for i in (unmerged, merged, dirty, blocker)}

    out = qq("worktrees", "clean", check=True)
    assert f"removed {wt[merged]}" in out.stdout
    assert f"deleted branch qqtui/{merged}" in out.stdout
    assert f"branch qqtui/{unmerged}: not merged" in out.stderr
    assert f"{wt[dirty]}: uncommitted changes" in out.stderr
    assert f"run {blocker} is running" in out.stderr
    assert not wt[merged].exists() and wt[dirty].exists() and wt[blocker].exists()
    assert branches(repo) == {f"qqtui/{i}" for i in (unmerged, dirty, blocker)}

    qq("worktrees", "clean", "--all", check=True)
    assert not wt[dirty].exists() and wt[blocker].exists()
    assert branches(repo) == {f"qqtui/{blocker}"}
    registered = git(repo, "worktree", "list", "--porcelain")
    assert str(wt[dirty]) not in registered and str(wt[merged]) not in registered
    assert [w["run_id"] for w in json.loads(qq("worktrees", "--json").stdout)] == [blocker]


def test_resume_reuses_the_sessions_worktree(
    tmp_path: Path, home: Path, db_url: str, qq, workers: Workers
) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(tmp_path)
    first = json.loads(
        qq(
            "add",
            "--json",
            "--worktree",
            "--repo",
            str(repo),
            "--",
            "sh",
            "-c",
            "echo one >> notes && git add notes && git commit -qm one && pwd",
            check=True,
        ).stdout
    )
    workers.start("-j", "2")
    wait_for_status(db_url, first["id"], {"succeeded"}, 30)
    path = home / "workspaces" / str(first["id"])
    # Removed on success (just after the end is recorded); the branch holds the work.
    wait_for(lambda: not path.exists(), 10, what="the worktree to be removed")

    # A retry of the succeeded first run checks the branch out there again.
    qq("retry", str(first["id"]), check=True)
    wait_for(lambda: Snapshot(db_url).run(first["id"]).attempt == 2, 10)  # type: ignore[union-attr]
    wait_for_status(db_url, first["id"], {"succeeded"}, 30)
    assert qq("logs", str(first["id"]), check=True).stdout.count(str(path)) == 2
    wait_for(lambda: not path.exists(), 10, what="the worktree to be removed again")

    again = int(qq("resume", first["session_id"], "--", "sh", "-c", "cat notes; pwd").stdout)
    done = wait_for_status(db_url, again, {"succeeded"}, 30)
    assert done.cwd == str(path) and done.worktree_branch == first["worktree_branch"]
    output = qq("logs", str(again), check=True).stdout
    assert output.splitlines() == ["one", "one", str(path)]
    # A failed run keeps the worktree; the next resume works in it as it was left.
    third = int(
        qq("resume", first["session_id"], "--", "sh", "-c", "echo wip > wip; exit 1").stdout
    )
    wait_for_status(db_url, third, {"failed"}, 30)
    fourth = int(qq("resume", first["session_id"], "--", "cat", "wip").stdout)
    wait_for_status(db_url, fourth, {"succeeded"}, 30)
    assert qq("logs", str(fourth), check=True).stdout == "wip\n"


def test_worktree_errors_are_one_line_and_queue_nothing(
    tmp_path: Path, home: Path, db_url: str, qq
) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(tmp_path)
    plain = tmp_path / "plain"
    plain.mkdir()
    line = one_error_line(qq("add", "--worktree", "--cwd", str(plain), "--", "true"))
    assert f"not a git repository: {plain}" in line
    line = one_error_line(
        qq("add", "--worktree", "--repo", str(repo), "--ref", "nope", "--", "true")
    )
    assert "has no commit 'nope'" in line
    line = one_error_line(qq("add", "--repo", str(repo), "--", "true"))
    assert "only apply with --worktree" in line
    (home / "workspaces" / "1").mkdir(parents=True)
    line = one_error_line(qq("add", "--worktree", "--repo", str(repo), "--", "true"))
    assert "worktree path" in line and "already taken" in line
    git(repo, "branch", "qqtui/1")
    (home / "workspaces" / "1").rmdir()
    line = one_error_line(qq("add", "--worktree", "--repo", str(repo), "--", "true"))
    assert "branch qqtui/1 already exists" in line
    assert Snapshot(db_url).runs() == []
    assert json.loads(qq("sessions", "--json", check=True).stdout) == []
    assert not (home / "workspaces" / "1").exists()
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_a_waiting_run_says_why_in_ls_and_show(
    home: Path, db_url: str, qq, workers: Workers
) -> None:  # type: ignore[no-untyped-def]
    holder = add(qq, "--shared-workspace", "--lock", "db", "--", "sleep", "30")
    waiter = add(qq, "--shared-workspace", "--lock", "db", "--", "true")
    free = add(qq, "--shared-workspace", "--lock", "other", "--", "true")
    workers.start("-j", "4")
    wait_for_status(db_url, free, {"succeeded"}, 30)
    reason = f"waiting for lock db held by run {holder}"
    snap = Snapshot(db_url)
    wait_for(lambda: getattr(snap.run(waiter), "reason", None) == reason, 10, what=reason)
    assert snap.run(waiter).status is Status.QUEUED  # type: ignore[union-attr]
    assert reason in qq("ls", check=True).stdout
    assert reason in qq("show", str(waiter), check=True).stdout
    qq("kill", str(holder), check=True)
    wait_for_status(db_url, waiter, {"succeeded"}, 30)


# --- declared locks under real workers: an occupancy log written by the runs themselves ----

# Long enough that sleeping, not spawning, dominates even on a loaded machine.
RUN_S = 0.8
OCCUPANT = textwrap.dedent(
    """
    import os, sys, time
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    rid = os.environ["QQ_RUN_ID"]
    os.write(fd, f"enter {rid} {time.time():.6f}\\n".encode())
    time.sleep(float(sys.argv[2]))
    os.write(fd, f"leave {rid} {time.time():.6f}\\n".encode())
    """
)
# Each kind with what it declares; kinds conflict with themselves, and src/* with src/a/*.
KINDS: list[tuple[str, dict[str, object]]] = [
    ("lock-a", {"locks": ["a"], "shared_workspace": True}),
    ("lock-b", {"locks": ["b"], "shared_workspace": True}),
    ("lock-c", {"locks": ["c"], "shared_workspace": True}),
    ("src-a", {"paths": ["src/a/*"]}),
    ("src", {"paths": ["src/*"]}),
    ("docs", {"paths": ["docs/*.md"]}),
    ("workspace", {}),  # the default lease, in a directory of its own
]
CONFLICTING = {frozenset({"src-a", "src"})} | {frozenset({k}) for k, _ in KINDS}


def _queue_occupants(store: Store, home: Path, tmp_path: Path, log: Path) -> dict[int, str]:
    shared_dir, own_dir = tmp_path / "shared", tmp_path / "own"
    shared_dir.mkdir()
    own_dir.mkdir()
    kinds: dict[int, str] = {}
    for i in range(30):
        kind, declared = KINDS[i % len(KINDS)]
        run = submit_run(
            store,
            home,
            RunSpec(
                [sys.executable, "-c", OCCUPANT, str(log), str(RUN_S)],
                cwd=str(own_dir if kind == "workspace" else shared_dir),
                **declared,  # type: ignore[arg-type]
            ),
        )
        kinds[run.id] = kind
    return kinds


def _check_occupancy(log: Path, kinds: dict[int, str]) -> None:
    enter: dict[int, float] = {}
    spans: dict[int, tuple[float, float]] = {}
    for line in log.read_text().splitlines():
        what, rid, at = line.split()
        if what == "enter":
            enter[int(rid)] = float(at)
        else:
            spans[int(rid)] = (enter[int(rid)], float(at))
    assert set(spans) == set(kinds)
    overlapping_free_pairs = 0
    for (i, (s1, e1)), (j, (s2, e2)) in itertools.combinations(spans.items(), 2):
        together = s1 < e2 and s2 < e1
        if frozenset({kinds[i], kinds[j]}) in CONFLICTING:
            assert not together, f"run {i} ({kinds[i]}) overlapped run {j} ({kinds[j]})"
        elif together:
            overlapping_free_pairs += 1
    wall = max(e for _, e in spans.values()) - min(s for s, _ in spans.values())
    busy = sum(e - s for s, e in spans.values())
    edges = sorted([(s, 1) for s, _ in spans.values()] + [(e, -1) for _, e in spans.values()])
    peak = max(itertools.accumulate(step for _, step in edges))
    assert overlapping_free_pairs > 20 and peak >= 4, (overlapping_free_pairs, peak)
    # The longest chain (src + src-a: 9 runs) is ~7 s of the ~24 s of work; the rest
    # runs beside it.
    assert wall < busy * 0.7, (wall, busy)


def test_thirty_runs_over_locks_and_globs_never_overlap_conflicts_with_one_worker(
    tmp_path: Path, home: Path, store: Store, db_url: str, workers: Workers
) -> None:
    log = tmp_path / "occupancy.log"
    kinds = _queue_occupants(store, home, tmp_path, log)
    worker = workers.start("-j", "8", "--until-idle")
    assert worker.wait(timeout=60) == 0
    assert {r.status for r in Snapshot(db_url).runs()} == {Status.SUCCEEDED}
    _check_occupancy(log, kinds)


def test_two_racing_workers_never_overlap_conflicting_runs(
    tmp_path: Path, home: Path, store: Store, db_url: str, workers: Workers
) -> None:
    log = tmp_path / "occupancy.log"
    kinds = _queue_occupants(store, home, tmp_path, log)
    procs = [workers.start("-j", "4", "--until-idle") for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    runs = Snapshot(db_url).runs()
    assert {r.status for r in runs} == {Status.SUCCEEDED}
    assert len({r.worker_id for r in runs}) == 2
    _check_occupancy(log, kinds)
