"""Command palette provider: every key binding that applies right now, by its description."""

from __future__ import annotations

from functools import partial

from rich.markup import escape
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode


class BindingCommands(Provider):
    """Offers the screen's enabled bindings (launch, cancel, kill, ...) as commands."""

    def _commands(self) -> list[tuple[str, str, str, DOMNode]]:
        screen = self.screen
        seen: set[str] = set()
        out: list[tuple[str, str, str, DOMNode]] = []
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not active.enabled or not binding.description or binding.system:
                continue
            if binding.action in seen:
                continue
            seen.add(binding.action)
            # The palette reads help as markup; a key like "/" inside brackets would break it.
            help_text = escape(
                f"{binding.tooltip or binding.description}  [{binding.key_display or key}]"
            )
            out.append((binding.description, help_text, binding.action, active.node))
        return out

    async def _run(self, action: str, node: DOMNode) -> None:
        # Run the action on the widget or screen that owns the binding, as the key would.
        await self.app.run_action(action, node)

    async def discover(self) -> Hits:
        for name, help_text, action, node in self._commands():
            yield DiscoveryHit(name, partial(self._run, action, node), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, action, node in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(name), partial(self._run, action, node), help=help_text
                )
