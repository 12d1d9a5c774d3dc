"""sanitize_line: only SGR survives, markup stays literal, nothing raises."""

from __future__ import annotations

import io
import random
import re

import pytest
from rich.console import Console
from rich.style import Style
from rich.text import Text

from qqtui.tui.output_text import sanitize_line

# What a terminal would treat as anything other than printable text or a tab.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
SGR_ONLY = re.compile(r"\x1b\[[0-9;]*m")


def terminal_output(text: Text) -> str:
    """What Rich would actually send to a terminal for this text."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        force_terminal=True,
        color_system="truecolor",
        width=10_000,
        legacy_windows=False,
    )
    console.print(text, end="", soft_wrap=True)
    return buffer.getvalue()


def assert_inert(text: Text) -> None:
    assert not CONTROL_CHARS.search(text.plain), repr(text.plain)
    for span in text.spans:
        style = span.style if isinstance(span.style, Style) else Style.parse(span.style)
        assert style.link is None
    leftover = SGR_ONLY.sub("", terminal_output(text))
    assert not CONTROL_CHARS.search(leftover), repr(leftover)


def test_plain_text_is_unchanged() -> None:
    text = sanitize_line("hello, world")
    assert text.plain == "hello, world"
    assert text.spans == []


def test_markup_is_literal() -> None:
    text = sanitize_line("[bold]x[/bold] and [link=http://evil]y[/link]")
    assert text.plain == "[bold]x[/bold] and [link=http://evil]y[/link]"
    assert text.spans == []
    assert "[bold]x[/bold]" in terminal_output(text)


def test_sgr_colours_become_styles() -> None:
    text = sanitize_line("\x1b[1;31mred\x1b[0m plain \x1b[38;5;208morange\x1b[m")
    assert text.plain == "red plain orange"
    styles = {text.plain[s.start : s.end]: s.style for s in text.spans}
    assert styles["red"].bold and styles["red"].color.number == 1
    assert styles["orange"].color.number == 208
    assert_inert(text)


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("\x1b]52;c;aGVsbG8=\x07after", "after"),  # clipboard write, BEL
        ("\x1b]52;c;aGVsbG8=\x1b\\after", "after"),  # clipboard write, ST
        ("\x1b]0;pwned title\x07x", "x"),
        ("\x1b]2;title\x9cx", "x"),
        ("\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\", "click"),
        ("\x1b]52;c;unterminated", ""),
        ("a\x1b[2J\x1b[Hb", "ab"),
        ("a\x1b[6nb", "ab"),  # DSR: would make the terminal type a reply
        ("\x1b[?1049h\x1b[?25lx\x1b[10;20Hy\x1b[3A\x1b[K", "xy"),
        ("\x1b[>0cq", "q"),  # device attributes query
        ("\x1b[2", ""),  # cut short at the end of the line
        ("\x1bPq#0;2;0;0;0\x1b\\dcs", "dcs"),
        ("\x1b_apc payload\x1b\\apc", "apc"),
        ("\x1b^pm\x1b\\pm", "pm"),
        ("\x1bXsos\x1b\\sos", "sos"),
        ("\x1bcreset", "reset"),
        ("\x1b7\x1b8\x1b(B\x1b#8x", "x"),
        ("\x9b2J\x9d0;t\x07c1\x85\x90dcs\x9cend", "c1end"),
        ("bell\x07 back\x08space nul\x00 cr\r del\x7f", "bell backspace nul cr del"),
        ("line\u2028sep\u2029par", "lineseppar"),
        ("\x1b\x1b[31mx", "x"),
    ],
)
def test_hostile_sequences_are_removed(raw: str, plain: str) -> None:
    text = sanitize_line(raw)
    assert text.plain == plain
    assert_inert(text)


def test_tabs_expand_to_stops() -> None:
    assert sanitize_line("a\tb").plain == "a       b"
    assert sanitize_line("\x1b[32mab\x1b[0m\tc").plain == "ab      c"


def test_invalid_utf8_becomes_replacement_characters() -> None:
    text = sanitize_line(b"ok \xff\xfe\xc3 end")
    assert text.plain == "ok \ufffd\ufffd\ufffd end"


def test_binary_renders_inert() -> None:
    assert_inert(sanitize_line(bytes(range(256)) * 4))


def test_oversized_sgr_parameter_is_dropped_not_raised() -> None:
    text = sanitize_line("\x1b[" + "9" * 5000 + "mx\x1b[38;2;999;999;999my")
    assert text.plain == "xy"
    assert_inert(text)


def test_fuzz_random_bytes_never_raise_and_stay_inert() -> None:
    rng = random.Random(20261122)
    interesting = [
        b"\x1b",
        b"[",
        b"]",
        b"P",
        b"_",
        b"m",
        b";",
        b":",
        b"\x07",
        b"\\",
        b"\x9b",
        b"\x9d",
        b"\xc2\x9b",
        b"\xc2\x9d",
        b"\t",
        b"\r",
        b"2J",
        b"38;5;",
        b"[bold]",
        b"\xe2\x80\xa8",
    ]
    for _ in range(3000):
        pieces = [
            rng.choice(interesting) if rng.random() < 0.6 else bytes([rng.randrange(256)])
            for _ in range(rng.randint(0, 60))
        ]
        data = b"".join(pieces)
        text = sanitize_line(data)
        assert_inert(text)
        assert_inert(sanitize_line(data.decode("latin-1")))
