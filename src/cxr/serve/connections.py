"""What uvicorn leaves open, closed for `cxr serve`: a Host allow list (DNS rebinding: a page on
another site whose name resolves to 127.0.0.1 reaches a local server with its own Host header)
and a deadline for each request's headers (uvicorn's keep-alive timeout runs only between
requests, so a client sending its headers a byte at a time would hold a connection forever)."""

from __future__ import annotations

import asyncio

from starlette.middleware.trustedhost import TrustedHostMiddleware
from uvicorn.protocols.http.h11_impl import H11Protocol

LOOPBACK = ("127.0.0.1", "localhost", "::1")
HEADER_SECONDS = 10.0  # from connecting (or the last response) to a request's complete headers
KEEP_ALIVE_SECONDS = 5


def allowed_hosts(host: str, given: list[str] | None) -> list[str]:
    """The Host names to answer: those given and the loopback names (a rebinding page cannot
    send those: its requests carry its own name); without names, on a loopback address the
    loopback names, on any other address any name (a proxy in front decides; stated at start)."""
    if given:
        return [*given, *(name for name in LOOPBACK if name not in given)]
    return list(LOOPBACK) if host in LOOPBACK else ["*"]


def describe_hosts(hosts: list[str]) -> str:
    """The start-up line's account of the allow list."""
    return "any (--allowed-host NAME to restrict)" if "*" in hosts else ", ".join(hosts)


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete
    within `seconds`."""

    seconds = HEADER_SECONDS
    deadline: asyncio.TimerHandle | None = None
    seen: object = None  # the request/response cycle whose headers arrived last

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and self.cycle is not self.seen:  # new headers are in
            self.seen = self.cycle
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()  # before uvicorn starts a pipelined request, whose headers disarm it
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(self.seconds, self._too_slow)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _too_slow(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def hardened(
    app, host: str, hosts: list[str] | None, header_seconds: float = HEADER_SECONDS
) -> tuple[object, dict]:
    """The app behind the Host allow list, and uvicorn's settings for the header deadline."""
    guarded = TrustedHostMiddleware(app, allowed_hosts=allowed_hosts(host, hosts))
    protocol = type("HeaderDeadline", (HeaderDeadline,), {"seconds": header_seconds})
    return guarded, {"http": protocol, "timeout_keep_alive": KEEP_ALIVE_SECONDS}
