"""What free text the worklist stores (reviewer names, labels, notes): shown as typed on a page
and in exports, so no NUL or other control character (line breaks and tabs aside), no lone
surrogate (PostgreSQL refuses them, JSON cannot encode them) and no invisible formatting
character such as the bidirectional overrides that make "evil" display as "live"."""

from __future__ import annotations

import unicodedata

ALLOWED_CONTROLS = "\n\r\t"
JOINERS = "\u200c\u200d"  # zero-width (non-)joiners: needed to write some languages
REFUSED = ("Cc", "Cs", "Cf")


def plain_text(text: str) -> str:
    """`text` unchanged, or ValueError naming the kind of character refused."""
    for char in text:
        kind = unicodedata.category(char)
        if kind in REFUSED and char not in ALLOWED_CONTROLS and char not in JOINERS:
            what = {"Cc": "control", "Cs": "lone surrogate", "Cf": "invisible formatting"}[kind]
            raise ValueError(f"{what} characters (here U+{ord(char):04X}) are not allowed")
    return text
