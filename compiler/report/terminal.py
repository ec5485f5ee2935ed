"""Text for the terminal: nothing from a model or a plan reaches it as a control sequence.

Names come from untrusted files; an ESC or OSC sequence in a tensor name would clear
the screen or set the window title when printed, and rich passes ESC through. Every
string tierplan's console renders (table cells, titles, captions, messages) and
every log line and error line goes through
:func:`~tierplan.compiler.inputs.escape_controls` here, so each view need not.
"""

from __future__ import annotations

import logging
from typing import Any

from rich.console import Console
from rich.text import Text
from tierplan.compiler.inputs import escape_controls

# Line breaks and tabs of tierplan's own captions stay; every other control is escaped.
LAYOUT = "\n\t"


class TerminalConsole(Console):
    """A rich console that escapes control characters in every string it renders."""

    def render_str(self, text: str, **options: Any) -> Text:
        """Rich's conversion of a string to text, after escaping its control characters."""
        return super().render_str(escape_controls(text, keep=LAYOUT), **options)


class EscapingFormatter(logging.Formatter):
    """A log formatter whose lines carry no control characters from names."""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted line, control characters escaped."""
        return escape_controls(super().format(record), keep=LAYOUT)
