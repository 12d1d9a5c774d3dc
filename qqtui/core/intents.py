"""User intents that touch both the store and the session directories: submit, resume,
cancel, kill, retry. The CLI and the app call these, never the store's internals."""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from qqtui.core import sessions, wakeup, workspaces
from qqtui.core.leases import lease_set_for
from qqtui.core.records import DEFAULT_GRACE_S, MAX_RETRIES, QqError, RunRecord
from qqtui.core.runspec import DEFAULT_HUNG_AFTER_S, DEFAULT_TTY_SIZE, RunSpec, check_tty_size
from qqtui.core.store import Store

ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_ENV = frozenset(
    {
        "QQ_HOME",
        "QQ_SESSION_ID",
        "QQ_SESSION_DIR",
        "QQ_RUN_ID",
        "QQ_HEARTBEAT_FILE",
        "QQ_ATTEMPT",
        "QQ_ARTIFACTS_DIR",
    }
)
# A run whose worktree is being created is held this long at most: if the submitting
# process dies meanwhile, the run becomes due and fails at spawn with a clear reason.
WORKTREE_HOLD_S = 300.0


def parse_env_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """`K=V` strings to a dict, with a clear error for anything else."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not ENV_KEY_RE.match(key):
            raise QqError(f"invalid --env {pair!r}: expected KEY=VALUE")
        if key in RESERVED_ENV:
            raise QqError(f"--env {key} is set by qqtui for every run and cannot be overridden")
        env[key] = value
    return env


def _validate(
    argv: Sequence[str], cwd: str, timeout_s: float | None, hung_after_s: float, retries: int
) -> None:
    if not argv or not argv[0]:
        raise QqError("empty command: give the command after --")
    if not os.path.isdir(cwd):
        raise QqError(f"working directory {cwd} does not exist or is not a directory")
    # isfinite: inf and 1e400 (which float() reads as inf) are no timeout a clock can reach.
    if timeout_s is not None and not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise QqError(f"timeout must be a positive number of seconds, not {timeout_s:g}")
    if not (hung_after_s > 0 and math.isfinite(hung_after_s)):
        raise QqError(f"hung threshold must be a positive number of seconds, not {hung_after_s:g}")
    if not 0 <= retries <= MAX_RETRIES:
        raise QqError(f"retries must be between 0 and {MAX_RETRIES}, not {retries}")


def _record_in_meta(session_path: Path, run: RunRecord) -> None:
    def update(meta: dict | None) -> dict:
        meta = dict(meta or {})
        meta.setdefault("session_id", run.session_id)
        meta.setdefault("agent", run.agent)
        meta.setdefault("created_at", time.time())
        runs = list(meta.get("runs", []))
        runs.append({"run_id": run.id, "argv": list(run.argv), "cwd": run.cwd, "at": time.time()})
        meta["runs"] = runs
        meta["last_argv"] = list(run.argv)
        meta["cwd"] = run.cwd
        return meta

    sessions.update_json(session_path / sessions.META_FILE, update, default={})


def submit_run(
    store: Store,
    home: Path,
    spec: RunSpec,
    *,
    actor: str = "cli",
    use_profile: bool = True,
    worktree_of: RunRecord | None = None,
) -> RunRecord:
    """Validate `spec`, create (or reuse) the session directory, queue the run, wake
    workers.

    With `use_profile`, the agent's profile from `<home>/config.toml` shapes the run:
    its command template wraps the argv, and its timeout, hung threshold and env are
    the defaults that the spec's own values override.

    Leases (leases.py): the run holds its cwd's directory unless `shared_workspace`
    or `paths` (which narrow the claim to those globs), plus each of `locks`.
    `worktree`: the run gets its own git worktree of `repo` (default: the cwd's
    repository) at `ref` as its cwd; `worktree_of` reuses an earlier run's worktree
    (resume). Every check happens before the run is queued.
    """
    from qqtui.core.profiles import profile_for

    spec = replace(spec, cwd=os.path.abspath(spec.cwd or os.getcwd()))
    sessions.validate_agent(spec.agent)
    if spec.session_id is not None:
        sessions.validate_session_id(spec.session_id)
        existing = _existing_session_agent(home, spec.session_id)
        if existing is not None and existing != spec.agent:
            spec = replace(spec, agent=existing)
    sid = spec.session_id or sessions.new_session_id()
    if use_profile:
        profile = profile_for(home, spec.agent)
        spec = replace(
            spec,
            argv=tuple(profile.build_command(spec.argv, home=home, session_id=sid)),
            timeout_s=profile.timeout if spec.timeout_s is None else spec.timeout_s,
            hung_after_s=profile.hung_after if spec.hung_after_s is None else spec.hung_after_s,
            env={**profile.env, **spec.env},
            tty=profile.tty if spec.tty is None else spec.tty,
        )
        if spec.tty and spec.tty_size is None:
            spec = replace(spec, tty_size=profile.tty_size)
    if spec.hung_after_s is None:
        spec = replace(spec, hung_after_s=DEFAULT_HUNG_AFTER_S)
    if spec.tty_size is not None and not spec.tty:
        raise QqError("--size only applies with --tty")
    if spec.tty:
        size = spec.tty_size or DEFAULT_TTY_SIZE
        try:
            check_tty_size(size)
        except ValueError as exc:
            raise QqError(str(exc)) from exc
        spec = replace(spec, tty=True, tty_size=size)
    else:
        spec = replace(spec, tty=False)
    if worktree_of is not None:
        spec = replace(spec, cwd=_reattach(worktree_of), keep_worktree=worktree_of.keep_worktree)
    if not spec.name and spec.argv:
        spec = replace(spec, name=os.path.basename(spec.argv[0]))
    assert spec.cwd is not None and spec.hung_after_s is not None
    _validate(spec.argv, spec.cwd, spec.timeout_s, spec.hung_after_s, spec.retries)
    if not spec.worktree and (spec.repo or spec.ref or spec.keep_worktree) and worktree_of is None:
        raise QqError("--repo, --ref and --keep-worktree only apply with --worktree")
    source = workspaces.resolve_source(spec.repo, spec.ref, spec.cwd) if spec.worktree else None
    leases = lease_set_for(
        spec.cwd, shared_workspace=spec.shared_workspace, locks=spec.locks, paths=spec.paths
    )
    session_path = sessions.create_session_dir(home, spec.agent, sid)
    run = store.add_run(
        replace(spec, cwd=source.repo) if source else spec,
        session_id=sid,
        actor=actor,
        leases=None if source else leases,
        worktree=worktree_of.checkout if worktree_of else None,
        hold_reason="preparing its git worktree" if source else None,
        hold_s=WORKTREE_HOLD_S,
    )
    if source is not None:
        try:
            run = _prepare_worktree(store, home, run, source, spec)
        except BaseException:
            if spec.session_id is None:
                # The session was made for this run alone: it must not outlive it empty.
                with contextlib.suppress(OSError):
                    session_path.rmdir()
            raise
    # Wake the workers before the bookkeeping below: the run is claimable from here on,
    # and its session's meta.json (two fsyncs) is only for people and `resume`.
    wake_workers(store)
    _record_in_meta(session_path, run)
    return run


def _prepare_worktree(
    store: Store,
    home: Path,
    run: RunRecord,
    source: workspaces.WorktreeSource,
    spec: RunSpec,
) -> RunRecord:
    """Create the held run's worktree now that its id is known, then release it; on
    any failure the run is deleted again, so nothing half-made is left queued."""
    path = workspaces.worktree_path(home, run.id)
    branch = workspaces.branch_name(run.id)
    try:
        workspaces.create_worktree(source, path, branch)
        # Globs and the workspace key are relative to the worktree, the run's cwd.
        leases = lease_set_for(
            str(path), shared_workspace=spec.shared_workspace, locks=spec.locks, paths=spec.paths
        )
        return store.release_run(
            run.id,
            cwd=str(path),
            leases=leases,
            worktree=str(path),
            worktree_repo=source.repo,
            worktree_branch=branch,
        )
    except BaseException:
        store.discard_run(run.id)
        raise


def _reattach(last: RunRecord) -> str:
    """The worktree a resumed run works in (the session's), checked out again if a
    success removed it; its path is the cwd."""
    assert last.worktree and last.worktree_repo and last.worktree_branch
    workspaces.reattach_worktree(last.worktree_repo, Path(last.worktree), last.worktree_branch)
    return last.worktree


def _existing_session_agent(home: Path, session_id: str) -> str | None:
    try:
        return sessions.find_session(home, session_id).agent
    except sessions.SessionError:
        return None


def resume_session(
    store: Store,
    home: Path,
    session_id: str,
    args: Sequence[str] | None = None,
    *,
    actor: str = "cli",
) -> RunRecord:
    """A new run in an existing session: the agent's resume template when it has one,
    else `args` through its command template, else the session's last command."""
    from qqtui.core.profiles import profile_for

    info = sessions.find_session(home, session_id)
    last = store.last_run_in_session(session_id)
    if last is not None:
        last_argv: list[str] = list(last.argv)
    else:
        meta = sessions.read_json(info.path / sessions.META_FILE, {}) or {}
        last_argv = list(meta.get("last_argv") or [])
    profile = profile_for(home, info.agent)
    command = profile.build_resume(session_id, last_argv, home=home, args=list(args or ()))
    # The resumed run keeps what the session declared: its leases and its worktree.
    spec = RunSpec(
        argv=tuple(command),
        name=last.name if last else "",
        agent=info.agent,
        cwd=last.cwd if last else None,
        env={**profile.env, **(last.env if last else {})},
        timeout_s=last.timeout_s if last else profile.timeout,
        hung_after_s=last.hung_after_s if last else profile.hung_after,
        retries=last.max_retries if last else 0,
        session_id=session_id,
        shared_workspace=bool(last) and last.workspace is None and not last.paths,
        locks=tuple(last.locks) if last else (),
        paths=tuple(last.paths) if last else (),
        tty=last.tty if last else profile.tty,
        tty_size=(
            (last.tty_cols, last.tty_rows)
            if last and last.tty and last.tty_cols and last.tty_rows
            else (profile.tty_size if not last else None)
        ),
    )
    worktree_of = last if last is not None and last.worktree else None
    return submit_run(store, home, spec, actor=actor, use_profile=False, worktree_of=worktree_of)


def cancel_run(
    store: Store, run_id: int, grace_s: float = DEFAULT_GRACE_S, actor: str = "cli"
) -> RunRecord:
    if grace_s < 0:
        raise QqError(f"grace must be 0 or more seconds, not {grace_s:g}")
    run = store.request_cancel(run_id, grace_s=grace_s, actor=actor)
    wake_workers(store)
    return run


def kill_run(store: Store, run_id: int, actor: str = "cli") -> RunRecord:
    run = store.request_kill(run_id, actor=actor)
    wake_workers(store)
    return run


def retry_run(store: Store, run_id: int, actor: str = "cli") -> RunRecord:
    previous = store.get_run(run_id)
    if previous.worktree and previous.status.is_final:
        _reattach(previous)  # a success removed it; the retry works in it again
    run = store.retry_run(run_id, actor=actor)
    wake_workers(store)
    return run


def wake_workers(store: Store) -> None:
    """Nudge the live workers on this host so they act now rather than at their next poll."""
    ids = [w.id for w in store.workers(host=store.host, live_only=True)]
    wakeup.nudge(str(store.engine.url), ids)


def run_paths(home: Path, run: RunRecord) -> tuple[Path, Path]:
    """The run's (session directory, run directory)."""
    session_path = sessions.session_dir(home, run.agent, run.session_id)
    return session_path, sessions.run_dir(session_path, run.id)


def output_log_path(home: Path, run: RunRecord) -> Path:
    return run_paths(home, run)[1] / sessions.OUTPUT_LOG


def signal_run_process(home: Path, run: RunRecord, pid: int, create_time: float, sig: int) -> bool:
    """Signal one process of a run's tree (from the PID tree pane), only if it still is
    that process and still belongs to this run."""
    from qqtui.core.procs.kill import find_run_processes
    from qqtui.core.procs.pids import RunTarget, signal_verified

    target = RunTarget.of(run, home)
    members = {p.pid for p in find_run_processes(target)}
    if pid not in members:
        raise QqError(f"process {pid} is not part of run {run.id} (anymore)")
    if not signal_verified(pid, create_time, sig):
        raise QqError(f"process {pid} has exited")
    return True
