"""What a run holds while it runs, and when two runs may not run at the same time.

A run's leases are derived from its own row (workspace, locks, paths), and the
leases held right now are those of the running runs: nothing is stored apart from
the runs, so a lease ends exactly when its holder stops being `running` (it ends,
is requeued, or is rescued as lost) and can never go stale on its own.

Three kinds of keys, each conflicting only with its own kind:

- workspace: the real path of the run's cwd. Two runs in the same directory do not
  run together unless one says `--shared-workspace` (it then takes no workspace
  key). `--paths` narrows the workspace claim to those paths, so a run that
  declares paths takes no whole-workspace key either.
- locks: names (`--lock db`); equal names conflict.
- paths: absolute glob patterns; two patterns conflict unless they are provably
  disjoint (see `globs_may_overlap`). A pattern covers what it matches *and*
  everything beneath it, so `src/*` conflicts with `src/pkg/mod.py`.

Stdlib only: the claim in store/claim.py and the CLI both use it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qqtui.core.errors import QqError

LOCK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class LeaseSet:
    """The keys one run holds while it runs."""

    workspace: str | None = None
    locks: frozenset[str] = frozenset()
    paths: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self.workspace is None and not self.locks and not self.paths

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> LeaseSet:
        """From a runs row or RunRecord-like mapping (JSON columns may still be text)."""
        return cls(
            workspace=row["workspace"],
            locks=frozenset(_decode_list(row["locks"])),
            paths=tuple(_decode_list(row["paths"])),
        )

    def describe(self) -> str:
        """One line for events and `show`: what this run holds while it runs."""
        parts = []
        if self.workspace:
            parts.append(f"workspace {self.workspace}")
        parts += [f"lock {name}" for name in sorted(self.locks)]
        parts += [f"paths {p}" for p in self.paths]
        return ", ".join(parts)


def _decode_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = json.loads(value)
    return [str(v) for v in value]


def lease_set_for(
    cwd: str,
    *,
    shared_workspace: bool = False,
    locks: Iterable[str] = (),
    paths: Iterable[str] = (),
) -> LeaseSet:
    """The leases a new run in `cwd` takes; raises QqError for a bad name or glob."""
    names = []
    for name in locks:
        if not LOCK_NAME_RE.match(name):
            raise QqError(
                f"invalid --lock {name!r}: use letters, digits and . _ : / @ + - "
                "(up to 128 characters, not starting with punctuation)"
            )
        names.append(name)
    root = os.path.realpath(cwd)
    globs: list[str] = []
    for pattern in paths:
        if not pattern or "\0" in pattern:
            raise QqError(f"invalid --paths {pattern!r}: give a file glob such as 'src/**'")
        # Relative globs are relative to the run's cwd; resolved once, here, so runs in
        # different directories compare real locations. A glob that leaves the cwd
        # ('/etc/*', '../**') would claim files the option promises not to reach.
        joined = os.path.normpath(os.path.join(root, pattern))
        if (
            os.path.isabs(pattern)
            or pattern.startswith("~")
            or not (joined == root or joined.startswith(root.rstrip(os.sep) + os.sep))
        ):
            raise QqError(
                f"invalid --paths {pattern!r}: give a glob relative to the run's cwd "
                "that stays inside it, such as 'src/**'"
            )
        if joined not in globs:
            globs.append(joined)
    workspace = None if shared_workspace or globs else root
    return LeaseSet(workspace=workspace, locks=frozenset(names), paths=tuple(globs))


# --- the conflict rule ----------------------------------------------------------------


def _has_magic(segment: str) -> bool:
    return any(c in _GLOB_CHARS for c in segment)


def _literal_prefix(segment: str) -> str:
    for i, c in enumerate(segment):
        if c in _GLOB_CHARS:
            return segment[:i]
    return segment


def _literal_suffix(segment: str) -> str:
    for i in range(len(segment) - 1, -1, -1):
        if segment[i] in _GLOB_CHARS or segment[i] == "]":
            return segment[i + 1 :]
    return segment


def _segments_may_match(a: str, b: str) -> bool:
    """Whether one path segment can match both patterns (False only when provable)."""
    magic_a, magic_b = _has_magic(a), _has_magic(b)
    if not magic_a and not magic_b:
        return a == b
    if not magic_a:
        return fnmatch.fnmatchcase(a, b)
    if not magic_b:
        return fnmatch.fnmatchcase(b, a)
    # Two wildcards: disjoint only if their fixed starts or fixed ends cannot agree
    # (`a*` vs `b*`, `*.py` vs `*.md`). Anything subtler counts as overlapping.
    pa, pb = _literal_prefix(a), _literal_prefix(b)
    if not (pa.startswith(pb) or pb.startswith(pa)):
        return False
    sa, sb = _literal_suffix(a), _literal_suffix(b)
    return sa.endswith(sb) or sb.endswith(sa)


def globs_may_overlap(a: str, b: str) -> bool:
    """Whether two absolute globs can name the same file or one's tree holds the other's.

    Conservative: True unless some segment at the same depth provably differs before
    either pattern reaches a `**` (which can span any number of directories).
    """
    sa = [s for s in a.split("/") if s]
    sb = [s for s in b.split("/") if s]
    for x, y in zip(sa, sb, strict=False):
        if "**" in x or "**" in y:
            return True
        if not _segments_may_match(x, y):
            return False
    # One is a prefix of the other (the shorter covers the longer's tree) or equal.
    return True


def conflict(mine: LeaseSet, theirs: LeaseSet) -> str | None:
    """What `mine` would wait for while `theirs` runs (None: they can run together)."""
    if mine.workspace is not None and mine.workspace == theirs.workspace:
        return f"workspace {mine.workspace}"
    common = sorted(mine.locks & theirs.locks)
    if common:
        return f"lock {common[0]}"
    for p in mine.paths:
        for q in theirs.paths:
            if globs_may_overlap(p, q):
                return f"paths {p}" if p == q else f"paths {p} (overlaps {q})"
    return None


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one admission pass over the queue."""

    admitted: list[int]
    waiting: dict[int, str]  # run id -> why it waits ("waiting for lock db held by run 12")
    unblocked: list[int]  # free to run, but past the limit (they wait for a slot)


WAIT_PREFIX = "waiting for "


def admit(
    candidates: Sequence[tuple[int, LeaseSet]],
    held: Sequence[tuple[int, LeaseSet]],
    limit: int,
) -> Decision:
    """Choose up to `limit` candidates (in the given order) that conflict with neither a
    held lease nor an already chosen candidate.

    Greedy in id order: a run that must wait does not hold back later runs that do
    not conflict with anything running, so non-conflicting work always flows. Every
    candidate is judged, also past the limit, so each waiting run's reason is current.
    """
    # Holders indexed by key: a claim judges up to a thousand candidates against every
    # running run, and pairwise checks made that quadratic (14 claims/s with 2,000
    # queued). Only globs still need pairwise comparison.
    by_workspace: dict[str, int] = {}
    by_lock: dict[str, int] = {}
    path_holders: list[tuple[int, LeaseSet]] = []

    def hold(holder_id: int, leases: LeaseSet) -> None:
        if leases.workspace is not None:
            by_workspace.setdefault(leases.workspace, holder_id)
        for name in leases.locks:
            by_lock.setdefault(name, holder_id)
        if leases.paths:
            path_holders.append((holder_id, leases))

    def blocker_of(leases: LeaseSet) -> tuple[int, str] | None:
        if leases.workspace is not None and leases.workspace in by_workspace:
            return by_workspace[leases.workspace], f"workspace {leases.workspace}"
        for name in sorted(leases.locks):
            if name in by_lock:
                return by_lock[name], f"lock {name}"
        if leases.paths:
            for holder_id, other in path_holders:
                if what := conflict(LeaseSet(paths=leases.paths), LeaseSet(paths=other.paths)):
                    return holder_id, what
        return None

    for holder_id, leases in held:
        hold(holder_id, leases)
    admitted: list[int] = []
    waiting: dict[int, str] = {}
    unblocked: list[int] = []
    for run_id, leases in candidates:
        full = len(admitted) >= limit
        if leases.empty:
            (unblocked if full else admitted).append(run_id)
            continue
        blocker = blocker_of(leases)
        if blocker is not None:
            holder_id, what = blocker
            waiting[run_id] = f"{WAIT_PREFIX}{what} held by run {holder_id}"
        elif full:
            unblocked.append(run_id)
        else:
            admitted.append(run_id)
            hold(run_id, leases)
    return Decision(admitted=admitted, waiting=waiting, unblocked=unblocked)
