"""Keeps Textual's strips and render caches out of reference cycles, so what a frame
drops is freed at once by reference counting instead of waiting for the garbage
collector, which stops the app while it works.

Two things in Textual make a cycle of everything they drop:

- `Strip.divide` caches its answer in the strip, and when the cut is the strip's
  whole width the answer is `[self]`, so the strip holds itself. The compositor divides
  every line of every widget it paints that way: every repainted line ended up as
  cyclic garbage (a Strip, its seven caches and its segments). `Strip.crop_extend`
  does the same when asked for the whole strip.
- `LRUCache` keeps its entries in a ring of linked lists; `clear()` drops the ring
  whole, and with it every strip, Text and row the cache held. DataTable clears its
  caches whenever its rows are cleared (the PID tree, on each change of selected
  run), LiveTable when the stylesheet changes. `discard` of the last entry drops a
  link that points at itself.

With 100 running runs that was ~70k objects in 10 s that only the collector could
free: young collections ~3.5 times a second on the app's loop, up to 15 ms each, and
older ones of up to 46 ms for what outlived them (bench/README.md, "App").

The replacements answer exactly what the stock methods answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.style import Style
from textual.cache import LRUCache
from textual.strip import Strip

_stock_divide = Strip.divide
_stock_crop_extend = Strip.crop_extend
_stock_clear = LRUCache.clear
_stock_discard = LRUCache.discard


def _divide(self: Strip, cuts: Iterable[int]) -> Sequence[Strip]:
    cell_length = self.cell_length
    cuts = [cut for cut in cuts if cut <= cell_length]
    if len(cuts) == 1 and cuts[0] == cell_length:
        return [self]  # what the stock method returns, without caching it in self
    return _stock_divide(self, cuts)


def _crop_extend(self: Strip, start: int, end: int, style: Style | None) -> Strip:
    if start <= 0 and end == self.cell_length:
        return self
    return _stock_crop_extend(self, start, end, style)


def _clear(self: LRUCache[Any, Any]) -> None:
    for link in self._cache.values():
        link.clear()  # [previous, next, key, value]: unlinks the ring
    _stock_clear(self)


def _discard(self: LRUCache[Any, Any], key: Any) -> None:
    link = self._cache.get(key)
    _stock_discard(self, key)
    if link is not None:
        link.clear()


def patches() -> list[tuple[type, str, object]]:
    """What `qqtui.tui.perf.install()` replaces: (class, attribute, replacement)."""
    replaced: list[tuple[type, str, object]] = [
        (Strip, "divide", _divide),
        (Strip, "crop_extend", _crop_extend),
    ]
    # Only the ring of [previous, next, key, value] lists that this unlinks.
    if "_head" in getattr(LRUCache, "__slots__", ()):
        replaced += [(LRUCache, "clear", _clear), (LRUCache, "discard", _discard)]
    return replaced
