"""PidTree: the selected run's process tree, with keys to signal one process."""

from __future__ import annotations

import os
import signal

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message

from qqtui.core import presentation
from qqtui.core.procs.scan import ProcInfo, RunTree
from qqtui.tui.perf.live_table import LiveTable

_COLUMNS = (
    ("pid", "PID", 7),
    ("name", "Process", 18),
    ("status", "State", 8),
    ("cpu", "CPU", 4),
    ("rss", "RSS", 6),
    ("cmdline", "Command", 120),
)


def _short_command(cmdline: tuple[str, ...]) -> str:
    """The command line with its program's directory dropped: the arguments are what
    tell the processes of one tree apart, and the pane is narrow."""
    if not cmdline:
        return ""
    return " ".join((os.path.basename(cmdline[0]), *cmdline[1:]))


class PidTree(LiveTable):
    """Processes of one run, indented by depth; `t` TERM and `K` KILL one of them."""

    BINDINGS: list[BindingType] = [
        Binding(
            "t",
            "signal_process('TERM')",
            "TERM proc",
            tooltip="Send SIGTERM to the selected process (after a confirmation)",
            id="pid_tree.term",
        ),
        Binding(
            "K",
            "signal_process('KILL')",
            "KILL proc",
            key_display="K",
            tooltip="Send SIGKILL to the selected process (after a confirmation)",
            id="pid_tree.kill",
        ),
    ]

    class SignalRequested(Message):
        """The user asked to signal `proc` of run `run_id`; the screen confirms and sends."""

        def __init__(self, pid_tree: PidTree, run_id: int, proc: ProcInfo, sig: int) -> None:
            super().__init__()
            self.pid_tree = pid_tree
            self.run_id = run_id
            self.proc = proc
            self.sig = sig

        @property
        def control(self) -> PidTree:
            return self.pid_tree

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self._tree: RunTree | None = None
        self._shown: dict[int, tuple[str, ...]] = {}
        self._shown_run: int | None = None

    def on_mount(self) -> None:
        for key, label, width in _COLUMNS:
            self.add_column(label, width=width, key=key)

    @property
    def tree(self) -> RunTree | None:
        return self._tree

    def show_tree(self, tree: RunTree | None) -> None:
        """Show `tree` (None: no running process), updating rows in place by pid."""
        if tree is None and self._tree is None and self._shown_run is None:
            return  # still nothing to show: leave the widget alone
        if tree is not None and self._tree is not None and tree.procs == self._tree.procs:
            self._tree = tree
            return
        self._tree = tree
        procs = {p.pid: p for p in tree.procs} if tree is not None else {}
        order = [p.pid for p in tree.procs] if tree is not None else []
        with self.app.batch_update():
            run_id = tree.run_id if tree is not None else None
            if run_id != self._shown_run:
                # Another run: its pids say nothing about the previous run's rows.
                self.clear()
                self._shown = {}
                self._shown_run = run_id
            for pid in [p for p in self._shown if p not in procs]:
                self.remove_row(str(pid))
                del self._shown[pid]
            structure_changed = False
            changed: list[tuple[str, str, Text]] = []
            for pid in order:
                cells = self._cells(procs[pid])
                old = self._shown.get(pid)
                if old is None:
                    self.add_row(*(Text(c) for c in cells), key=str(pid))
                    structure_changed = True
                elif old != cells:
                    for (key, _, _), a, b in zip(_COLUMNS, old, cells, strict=True):
                        if a != b:
                            changed.append((str(pid), key, Text(b)))
                self._shown[pid] = cells
            self.replace_cells(changed)
            if structure_changed:
                # Keep parents above their children, in the scan's depth-first order.
                position = {pid: i for i, pid in enumerate(order)}
                self.sort(key=lambda values: position.get(int(values[0].plain.strip()), 0))

    @staticmethod
    def _cells(proc: ProcInfo) -> tuple[str, ...]:
        indent = "  " * proc.depth + ("└ " if proc.depth else "")
        return (
            str(proc.pid),
            f"{indent}{proc.name}",
            proc.status,
            f"{proc.cpu_percent:.0f}%",
            presentation.size(proc.rss),
            _short_command(proc.cmdline) or f"[{proc.name}]",
        )

    def selected_process(self) -> ProcInfo | None:
        if self._tree is None or not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        pid = int(row_key.value or 0)
        return next((p for p in self._tree.procs if p.pid == pid), None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "signal_process":
            return True if self.selected_process() is not None else None
        return True

    def action_signal_process(self, name: str) -> None:
        proc = self.selected_process()
        if proc is None or self._tree is None:
            return
        sig = signal.SIGKILL if name == "KILL" else signal.SIGTERM
        self.post_message(self.SignalRequested(self, self._tree.run_id, proc, sig))
