"""Paints only the widgets a partial screen update can show.

For a partial update Textual's compositor asks every visible widget whose clip (for a
top-level widget, the whole screen) overlaps the changed area for all of its lines,
then keeps the lines inside that area. So a line appended to the followed output pane
rendered the runs table, the process pane, the header, the footer and three scroll bars
as well: about 2 ms of a 6 ms frame, five times a second for a run printing five lines a
second (bench/README.md, "App").

A widget whose visible region does not overlap the area paints none of its cells, so
leaving it out gives the same update. Full updates (crop None) are untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from textual._compositor import Compositor
from textual.geometry import Region
from textual.strip import Strip

_stock_get_renders = Compositor._get_renders


def _get_renders(
    self: Compositor, crop: Region | None = None
) -> Iterable[tuple[Region, Region, list[Strip]]]:
    if not crop:
        return _stock_get_renders(self, crop)
    return _cropped_renders(self, crop)


def _cropped_renders(
    self: Compositor, crop: Region
) -> Iterator[tuple[Region, Region, list[Strip]]]:
    overlaps = crop.overlaps
    intersection = Region.intersection
    for widget, (region, clip) in self.visible_widgets.items():
        visible = intersection(region, clip)
        if not overlaps(visible):
            continue  # none of its cells is in the update
        x, y, width, height = visible
        # The widget's own coordinates of what the clip leaves of it (all of it when
        # the clip contains it), as the stock method asks for.
        lines = widget.render_lines(Region(x - region.x, y - region.y, width, height))
        yield region, clip, lines


def patches() -> list[tuple[type, str, object]]:
    """What `qqtui.tui.perf.install()` replaces: (class, attribute, replacement)."""
    return [(Compositor, "_get_renders", _get_renders)]
