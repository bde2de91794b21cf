"""Upload bodies, read by hand so that nothing reaches disk and nothing is read before it is
allowed.

Starlette's form parsing reads the whole multipart body first, spooling every file over 1 MiB to
the temporary directory, and only then do the endpoint's checks run. Here pure ASGI guards check
the token (`cxr.serve.auth`) and the declared Content-Length from the headers alone, and the
endpoints parse the body as it streams in, with python-multipart's streaming parser, into memory
in bounded pieces: each file is handed over as soon as it is complete, so a batch is reduced image
by image. A body that stops arriving is answered 408 (`cxr.serve.connections` cuts off slow
headers; nothing else would let a stalled upload go), one cut off by a client that hung up 400,
without a traceback in the log.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
from fastapi import HTTPException, Request
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

GUARDED = "/api/"
BODY_PAUSE_SECONDS = 10.0  # the longest wait for an upload's next piece, as for its headers


class UploadGuard:
    """ASGI middleware: 413 for a declared body over its path's limit, answered from the headers
    before any body byte is read (inside the token check, which answers first)."""

    def __init__(self, app, limits: dict[str, int]) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(GUARDED):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        limit = self.limits.get(scope["path"])
        declared = headers.get(b"content-length", b"0")
        if limit is not None and (not declared.isdigit() or int(declared) > limit):
            await _answer(send, 413, f"request body over {limit // 2**20} MB")
            return
        await self.app(scope, receive, send)


async def _answer(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Upload:
    """One file part: its name as the client gave it and its bytes (None when over the limit)."""

    filename: str
    data: bytes | None


@dataclass
class _Parts:
    field: str
    max_bytes: int
    done: list[Upload] = field(default_factory=list)
    header: bytes = b""
    value: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    chunks: list[bytes] | None = None
    size: int = 0
    filename: str = ""

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.begin,
            "on_header_field": lambda d, s, e: setattr(self, "header", self.header + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "value", self.value + d[s:e]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.data,
            "on_part_end": self.end,
        }

    def begin(self) -> None:
        self.headers, self.chunks, self.size = {}, None, 0

    def header_end(self) -> None:
        self.headers[self.header.lower()] = self.value
        self.header, self.value = b"", b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        if options.get(b"name", b"").decode("utf-8", "replace") == self.field:
            self.chunks = []
            self.filename = options.get(b"filename", b"upload").decode("utf-8", "replace")

    def data(self, data: bytes, start: int, end: int) -> None:
        if self.chunks is None:
            return  # another form field: ignored
        self.size += end - start
        if self.size <= self.max_bytes:
            self.chunks.append(bytes(data[start:end]))
        else:
            self.chunks.clear()  # over the limit: nothing more is kept

    def end(self) -> None:
        if self.chunks is not None:
            whole = b"".join(self.chunks) if self.size <= self.max_bytes else None
            self.done.append(Upload(self.filename or "upload", whole))
        self.chunks = None


async def uploads(
    request: Request, field: str, max_bytes: int, max_total: int
) -> AsyncIterator[Upload]:
    """The file parts named `field`, each as soon as the stream has delivered all of it; a body
    without Content-Length is cut off at `max_total` all the same."""
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise HTTPException(422, f"send the file(s) as multipart/form-data, field {field!r}")
    parts, total = _Parts(field, max_bytes), 0
    try:
        parser = MultipartParser(boundary, parts.callbacks())
        chunks = request.stream()
        while (chunk := await _next_piece(chunks)) is not None:
            total += len(chunk)
            if total > max_total:
                raise HTTPException(413, f"request body over {max_total // 2**20} MB")
            parser.write(chunk)
            while parts.done:
                yield parts.done.pop(0)
        parser.finalize()
    except ValueError as exc:  # python-multipart's MultipartParseError
        raise HTTPException(422, f"malformed multipart body: {exc}") from None
    while parts.done:
        yield parts.done.pop(0)


async def _next_piece(chunks: AsyncIterator[bytes]) -> bytes | None:
    """The body's next piece (None after the last); 408 when the client pauses longer than
    BODY_PAUSE_SECONDS (a client that stops mid-body would otherwise hold its connection for
    good), 400 when it hangs up mid-body."""
    with anyio.move_on_after(BODY_PAUSE_SECONDS):
        try:
            return await anext(chunks, None)
        except ClientDisconnect:  # an answer nobody reads, not a traceback in the log
            raise HTTPException(400, "the client left before the end of its upload") from None
    raise HTTPException(408, f"the upload paused over {BODY_PAUSE_SECONDS:g} s: send it again")


def multipart_schema(field: str, many: bool) -> dict:
    """The OpenAPI request body FastAPI would have described for `File(...)` parameters."""
    binary = {"type": "string", "format": "binary"}
    prop = {"type": "array", "items": binary} if many else binary
    schema = {"type": "object", "properties": {field: prop}, "required": [field]}
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    }
