"""Pictures carried inside a page or a JSON answer as data URIs: a report stays one
self-contained file and the API needs no second request per image."""

from __future__ import annotations

import base64


def data_uri(content: bytes, mime: str = "image/png") -> str:
    """`content` (the file's bytes) as a base64 `data:` URI (RFC 2397)."""
    return f"data:{mime};base64," + base64.b64encode(content).decode()
