"""User-supplied text made safe to show: cut short (`clipped`) and escaped for a terminal (`printable`);
counts with their noun (`counted`).

The bottom layer, beside errors.py: spec and config errors quote what the user typed, training
prints the folder they chose, the CLI prints file and class names; all go through here.
"""

from __future__ import annotations

import unicodedata

SHOWN_CHARS = 40  # of a user's value or spec line quoted in an error (a spec may be megabytes)
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: object, keep: str = "") -> str:
    """Text safe for a terminal: control characters (and bidi controls) as escapes, e.g. '\\x1b'.

    User-supplied names (files, class folders, runs) reach the terminal only through this, so a
    name cannot move the cursor, change colours or retitle the window. `keep` lists control
    characters left alone (main() keeps newlines in multi-line error messages).
    """
    return "".join(
        _escape(ch) if ch not in keep and (unicodedata.category(ch) == "Cc" or ch in _BIDI) else ch
        for ch in str(text)
    )


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clipped(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text`, or its first `limit` characters and how many more there are."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more)"


def counted(count: int, noun: str) -> str:
    """'1 epoch', '4 epochs': an English count with its noun, plural unless the count is 1."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
