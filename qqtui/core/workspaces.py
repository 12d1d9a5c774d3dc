"""Git worktrees as private run workspaces: create, reattach, remove, list, clean.

A `--worktree` run works in `<home>/workspaces/<run_id>` on a new branch
`qqtui/<run_id>`, a linked worktree of the user's repository (objects are shared;
only the checkout is private), so parallel agents never share an index, HEAD or
uncommitted files. The branch is the run's product: removing a worktree never
deletes it; `clean` deletes branches as documented on `clean_worktrees`.

Every git call is an argv list (never a shell), with prompts disabled and a
timeout, and a failure becomes one clear QqError line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from qqtui.core.records import QqError, RunRecord

WORKSPACES_DIR = "workspaces"
BRANCH_PREFIX = "qqtui/"
GIT_TIMEOUT_S = 120.0


class GitError(QqError):
    pass


def _git(
    args: Sequence[str], *, cwd: str | Path, check: bool = True
) -> subprocess.CompletedProcess:
    git = shutil.which("git")
    if git is None:
        raise GitError("git is not installed (needed for --worktree)")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    # A run's own GIT_DIR / GIT_WORK_TREE (qqtui started from a hook) must not redirect us.
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(var, None)
    try:
        proc = subprocess.run(
            [git, "-C", str(cwd), *args],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} in {cwd} took longer than {GIT_TIMEOUT_S:g}s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise GitError(f"git {' '.join(args[:2])} failed in {cwd}: {detail}")
    return proc


def worktree_path(home: Path, run_id: int) -> Path:
    return home / WORKSPACES_DIR / str(run_id)


def branch_name(run_id: int) -> str:
    return f"{BRANCH_PREFIX}{run_id}"


@dataclass(frozen=True, slots=True)
class WorktreeSource:
    """A checked repository and commit a new worktree starts from."""

    repo: str  # the repository's top level, real path
    ref: str
    commit: str


def resolve_source(repo: str | None, ref: str | None, cwd: str) -> WorktreeSource:
    """Check `repo` (default: the cwd's repository) and `ref` (default HEAD) before
    anything is queued; raises GitError with the one line a user needs."""
    where = os.path.abspath(repo or cwd)
    if not os.path.isdir(where):
        raise GitError(f"--repo {where} does not exist or is not a directory")
    proc = _git(["rev-parse", "--show-toplevel"], cwd=where, check=False)
    if proc.returncode != 0:
        raise GitError(f"not a git repository: {where} (--worktree needs one; give --repo)")
    top = os.path.realpath(proc.stdout.strip())
    ref = ref or "HEAD"
    proc = _git(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"],
        cwd=top,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        what = "has no commits yet" if ref == "HEAD" else f"has no commit {ref!r}"
        raise GitError(f"git repository {top} {what}")
    return WorktreeSource(repo=top, ref=ref, commit=proc.stdout.strip())


def branch_exists(repo: str, branch: str) -> bool:
    proc = _git(["show-ref", "--verify", "--quiet", f"refs/heads/{branch}"], cwd=repo, check=False)
    return proc.returncode == 0


def check_free(repo: str, path: Path, branch: str) -> None:
    """Refuse a worktree path or branch that is already taken (say, by an earlier
    database's run with the same id)."""
    if os.path.lexists(path):
        raise GitError(
            f"worktree path {path} is already taken; remove it (or `qqtui worktrees clean`)"
        )
    if branch_exists(repo, branch):
        raise GitError(f"branch {branch} already exists in {repo}; delete or rename it first")


def create_worktree(source: WorktreeSource, path: Path, branch: str) -> None:
    """`git worktree add -b BRANCH PATH COMMIT`, into a private parent directory."""
    check_free(source.repo, path, branch)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _git(
        ["worktree", "add", "--quiet", "-b", branch, "--", str(path), source.commit],
        cwd=source.repo,
    )


def reattach_worktree(repo: str, path: Path, branch: str) -> None:
    """Make sure a resumed session's worktree exists: reuse it, or check its branch
    out again at the same path if it was removed after a success."""
    if (path / ".git").exists():
        return
    if not branch_exists(repo, branch):
        raise GitError(
            f"the session's worktree {path} and its branch {branch} were cleaned up; "
            "start a new --worktree run instead"
        )
    if os.path.lexists(path):
        raise GitError(f"worktree path {path} exists but is not a git worktree")
    _git(["worktree", "prune"], cwd=repo, check=False)  # a stale record would block the add
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _git(["worktree", "add", "--quiet", "--", str(path), branch], cwd=repo)


def worktree_state(path: Path) -> str:
    """`dirty`, `clean`, or `removed` (the directory is gone)."""
    if not (path / ".git").exists():
        return "removed"
    proc = _git(["status", "--porcelain", "--untracked-files=normal"], cwd=path, check=False)
    if proc.returncode != 0:
        return "broken"
    return "dirty" if proc.stdout.strip() else "clean"


def remove_worktree(repo: str, path: Path, *, force: bool = False) -> bool:
    """Remove a worktree (False, and nothing removed, if it has uncommitted changes
    and not `force`: those changes exist nowhere else)."""
    if not os.path.lexists(path):
        _git(["worktree", "prune"], cwd=repo, check=False)
        return True
    args = ["worktree", "remove", *(["--force", "--force"] if force else []), "--", str(path)]
    proc = _git(args, cwd=repo, check=False)
    if proc.returncode == 0:
        return True
    if not force:
        return False
    # Not a registered worktree any more (its repo record was pruned): just a directory.
    shutil.rmtree(path, ignore_errors=True)
    _git(["worktree", "prune"], cwd=repo, check=False)
    return not os.path.lexists(path)


def delete_branch(repo: str, branch: str, *, force: bool) -> bool:
    """`git branch -d` (only if merged into the repository's HEAD) or `-D`."""
    if not branch_exists(repo, branch):
        return True
    proc = _git(["branch", "-D" if force else "-d", "--", branch], cwd=repo, check=False)
    return proc.returncode == 0


def dir_size(path: Path) -> int:
    """Bytes in files under `path`, not following symlinks."""
    total = 0
    stack = [str(path)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


# --- listing and cleaning ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorktreeInfo:
    """One run worktree (shared by every run of its session) as it stands now."""

    run_id: int  # the newest run that used it
    status: str  # that run's status
    active: bool  # some run using it is queued or running
    repo: str
    branch: str
    path: str
    state: str  # dirty | clean | removed | broken
    size: int
    branch_exists: bool

    def to_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "active": self.active,
            "repo": self.repo,
            "branch": self.branch,
            "path": self.path,
            "state": self.state,
            "size": self.size,
            "branch_exists": self.branch_exists,
        }


def list_worktrees(runs: Iterable[RunRecord]) -> list[WorktreeInfo]:
    """Every worktree the runs know of, newest run first; removed ones are listed
    while their branch still exists."""
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        if run.worktree and run.worktree_repo and run.worktree_branch:
            groups.setdefault(run.worktree, []).append(run)
    out: list[WorktreeInfo] = []
    for path, members in groups.items():
        newest = max(members, key=lambda r: r.id)
        assert newest.worktree_repo is not None and newest.worktree_branch is not None
        state = worktree_state(Path(path))
        has_branch = os.path.isdir(newest.worktree_repo) and branch_exists(
            newest.worktree_repo, newest.worktree_branch
        )
        if state == "removed" and not has_branch:
            continue  # fully cleaned
        out.append(
            WorktreeInfo(
                run_id=newest.id,
                status=str(newest.status),
                active=any(r.is_active for r in members),
                repo=newest.worktree_repo,
                branch=newest.worktree_branch,
                path=path,
                state=state,
                size=dir_size(Path(path)) if state != "removed" else 0,
                branch_exists=has_branch,
            )
        )
    out.sort(key=lambda w: w.run_id, reverse=True)
    return out


@dataclass(frozen=True, slots=True)
class CleanResult:
    removed: list[str]  # worktree paths removed
    deleted_branches: list[str]
    kept: list[str]  # one line each: what was kept and why


def clean_worktrees(runs: Iterable[RunRecord], *, everything: bool) -> CleanResult:
    """Remove the worktrees of finished runs and prune git's records of them.

    Default (`--finished`): clean worktrees are removed, dirty ones kept (their
    changes exist nowhere else); a branch is deleted only if it is merged into its
    repository's HEAD (`git branch -d`), otherwise kept and reported.
    `everything` (`--all`): dirty worktrees are removed too and branches deleted
    merged or not (`git branch -D`). A worktree some queued or running run uses is
    never touched.
    """
    removed: list[str] = []
    deleted: list[str] = []
    kept: list[str] = []
    repos: set[str] = set()
    for info in list_worktrees(runs):
        if info.active:
            kept.append(f"{info.path}: run {info.run_id} is {info.status}")
            continue
        if not os.path.isdir(info.repo):
            kept.append(f"{info.path}: its repository {info.repo} is gone")
            continue
        repos.add(info.repo)
        if info.state != "removed":
            if remove_worktree(info.repo, Path(info.path), force=everything):
                removed.append(info.path)
            else:
                kept.append(f"{info.path}: uncommitted changes (use --all to discard them)")
                continue
        if info.branch_exists:
            if delete_branch(info.repo, info.branch, force=everything):
                deleted.append(info.branch)
            else:
                kept.append(f"branch {info.branch}: not merged into HEAD of {info.repo} (--all)")
    for repo in sorted(repos):
        _git(["worktree", "prune"], cwd=repo, check=False)
    return CleanResult(removed=removed, deleted_branches=deleted, kept=kept)
