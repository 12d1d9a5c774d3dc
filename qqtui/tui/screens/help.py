"""HelpScreen: every key of the screen it was opened from, with what it does."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

from qqtui.tui.screens.main import MainScreen
from qqtui.tui.widgets.output_view import OutputView
from qqtui.tui.widgets.pid_tree import PidTree

FILTER_HELP = (
    "Filter (/): words must all match. A status word keeps runs in that state "
    "(queued, running, waiting, hung, failed, timed_out, lost, cancelled, succeeded, active, done); "
    "host:NAME keeps runs on that host (H cycles through the hosts); any other word is "
    "searched in id, name, agent, command, host and reason."
)


def bindings_table(screen: Screen[object]) -> Table:
    """The keys active on `screen` (its focused widget, the screen and the app)."""
    table = Table(box=None, expand=True, show_header=True, header_style="bold")
    table.add_column("Key", style="bold cyan", no_wrap=True, width=10)
    table.add_column("Action", no_wrap=True, width=18)
    table.add_column("What it does", ratio=1)
    seen: set[str] = set()
    for key, active in screen.active_bindings.items():
        binding = active.binding
        # Our bindings have dotted ids ("main.cancel"); the rest is widget navigation.
        if not binding.id or "." not in binding.id or binding.action in seen:
            continue
        if not binding.show and not active.enabled:
            continue
        seen.add(binding.action)
        style = "" if active.enabled else "dim"
        note = "" if active.enabled else "  (not for the selected run)"
        table.add_row(
            binding.key_display or screen.app.get_key_display(binding) or key,
            Text(binding.description, style=style),
            Text((binding.tooltip or "") + note, style=style),
        )
    return table


def pane_keys_table(title: str, bindings: list[BindingType]) -> Table:
    """Keys a pane has when it is focused (they are not active on the screen itself)."""
    table = Table(box=None, expand=True, show_header=False, title=title, title_justify="left")
    table.add_column(style="bold cyan", no_wrap=True, width=10)
    table.add_column(no_wrap=True, width=18)
    table.add_column(ratio=1)
    for binding in bindings:
        if isinstance(binding, Binding) and binding.description:
            table.add_row(binding.key_display or binding.key, binding.description, binding.tooltip)
    return table


class HelpScreen(ModalScreen[None]):
    """Keys for the screen underneath, from its bindings (the same the Footer shows)."""

    BINDINGS: list[BindingType] = [
        Binding(
            "escape,question_mark,q", "dismiss", "Close", tooltip="Close help", id="help.close"
        ),
    ]

    def __init__(self, for_screen: Screen[object]) -> None:
        super().__init__()
        self.for_screen = for_screen

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog", classes="dialog"):
            yield Label("Keys", classes="dialog-title")
            with VerticalScroll():
                yield Static(bindings_table(self.for_screen), id="help-keys")
                if isinstance(self.for_screen, MainScreen):
                    yield Static(
                        pane_keys_table("In the output pane", OutputView.BINDINGS),
                        classes="help-pane-keys",
                    )
                    yield Static(
                        pane_keys_table("In the processes pane", PidTree.BINDINGS),
                        classes="help-pane-keys",
                    )
                yield Static(FILTER_HELP, markup=False, id="help-filter")
            yield Label("escape closes · ctrl+p opens the command palette", classes="dialog-hint")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
