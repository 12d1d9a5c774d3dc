"""FollowsBottom: a scroll view that keeps its newest line in view until the user
scrolls up, and follows again once a scroll brings them back to the bottom (as
`less +F`, toolong and k9s's log view do). The log pane and the terminal pane share it.
"""

from __future__ import annotations

from textual.scroll_view import ScrollView


class FollowsBottom(ScrollView):
    """Mixed into a ScrollView that declares `follow: reactive[bool]` itself (a
    reactive's watcher belongs to the class that declares it)."""

    follow: bool

    def jump_to_end(self) -> None:
        """Show the last line now, without animation (following must not lag)."""
        self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Only movement decides: a scroll position clamped down by a layout change
        # (a scrollbar or bar appearing) must neither pause nor resume following.
        at_bottom = round(new_value) >= self.max_scroll_y
        if new_value > old_value and at_bottom and not self.follow:
            # Not here: this watcher runs inside the animator's step of a smooth scroll
            # (up, down, page down), and turning follow on scrolls to the end without
            # animation, which removes that very animation from the animator while it is
            # being stepped; the animator then crashed the app with KeyError(scroll_y).
            self.call_after_refresh(self._resume_follow_at_bottom)
        elif new_value < old_value and not at_bottom and self.follow:
            self.follow = False

    def _resume_follow_at_bottom(self) -> None:
        """Turn follow on after a scroll reached the bottom, outside the animator."""
        if not self.follow and round(self.scroll_y) >= self.max_scroll_y:
            self.follow = True

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow
