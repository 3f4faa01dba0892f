"""Streamlit's WebSocket protocol for the benchmarks: record what a real browser sends to
the app, and replay it from light clients that render nothing.

A class on one 2-core machine cannot run 30 real browsers without taking the CPU from
the server it measures. So a real Chromium does each action once, on the real page (the
canvas component, the Train form), while CDP records the frames it sends; then many
`Client`s replay those frames, each in its own Streamlit session, and read the server's
answers (ForwardMsg protobufs). Run on its own this module measures nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import common  # noqa: F401  (puts the project on sys.path)

from tools.app_server import launch_chromium

TIMEOUT_S = 120
VIEWPORT = {"width": 1400, "height": 1000}


@dataclass
class Recording:
    """What a real browser sent: its WebSocket handshake's cookie and subprotocols, every
    binary frame in order (frames[0] loads the page), and the paths it fetched over HTTP
    once the action started."""

    cookie: str
    protocols: list[str]
    frames: list[bytes]
    fetched: list[str] = field(default_factory=list)

    def static(self) -> list[str]:
        """The app's static files (JavaScript modules loaded on first use) it fetched."""
        return [path for path in self.fetched if path.startswith("/static/")]


async def record(
    url: str, path: str, ready: Callable[..., Awaitable], act: Callable[..., Awaitable]
) -> Recording:
    """Open url+path in Chromium, `await ready(page)`, then `await act(page)`, recording
    the frames sent from the start and the HTTP requests made during `act`."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await launch_chromium(p)
        try:
            context = await browser.new_context(viewport=VIEWPORT)
            page = await context.new_page()
            cdp = await context.new_cdp_session(page)
            handshakes, frames, fetched = [], [], []
            cdp.on("Network.webSocketWillSendHandshakeRequest", lambda e: handshakes.append(e))
            cdp.on("Network.webSocketFrameSent", lambda e: frames.append(e["response"]))
            await cdp.send("Network.enable")
            await page.goto(url + path, timeout=TIMEOUT_S * 1000)
            await ready(page)
            page.on("request", lambda r: fetched.append(urlsplit(r.url).path))
            await act(page)
        finally:
            await browser.close()
    binary = [base64.b64decode(f["payloadData"]) for f in frames if f["opcode"] == 2]
    if not handshakes or not binary:
        raise SystemExit(f"could not record {path}: {len(binary)} frames sent")
    headers = handshakes[0]["request"]["headers"]
    protocols = [p.strip() for p in headers["Sec-WebSocket-Protocol"].split(",")]
    return Recording(headers["Cookie"], protocols, binary, fetched)


def parse(data: bytes):
    """(ForwardMsg, the element it adds to the page or None)."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    msg = ForwardMsg()
    msg.ParseFromString(data)
    return msg, (msg.delta.new_element if msg.WhichOneof("type") == "delta" else None)


def element_type(element) -> str | None:
    return element.WhichOneof("type") if element is not None else None


def finished(msg, element):
    """A script or fragment run ended (not one cut short for a rerun): its status."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    ended = msg.WhichOneof("type") == "script_finished"
    if ended and msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
        return msg.script_finished
    return None


def fetch(url: str) -> int:
    """GET url (blocking); the body's size."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        return len(response.read())


class Client:
    """One Streamlit session over a WebSocket, as a browser tab would open it."""

    def __init__(self, url: str, rec: Recording):
        self.url, self.rec = url, rec
        self._stack = contextlib.AsyncExitStack()
        self.ws = None
        self.received_bytes = 0  # every server message, as sent on the wire

    async def __aenter__(self) -> Client:
        import websockets

        self.ws = await self._stack.enter_async_context(
            websockets.connect(
                self.url.replace("http://", "ws://") + "/_stcore/stream",
                subprotocols=self.rec.protocols,
                additional_headers={"Cookie": self.rec.cookie, "Origin": self.url},
                max_size=None,
                compression=None,
            )
        )
        return self

    async def __aexit__(self, *exc) -> None:
        await self._stack.aclose()

    async def load(self) -> None:
        """Send the recorded page load; return when its run has finished."""
        await self.ws.send(self.rec.frames[0])
        await self.until(finished, TIMEOUT_S)

    async def until(self, done, timeout_s: float):
        """Read server messages until `done(msg, element)` returns a value; return it.
        An exception element from the server raises RuntimeError."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = max(deadline - time.monotonic(), 0.01)
            data = await asyncio.wait_for(self.ws.recv(), left)
            self.received_bytes += len(data)
            msg, element = parse(data)
            if element_type(element) == "exception":
                raise RuntimeError(f"server exception: {element.exception.message}")
            value = done(msg, element)
            if value is not None:
                return value


if __name__ == "__main__":
    print("benchmarks/wire.py: helpers for the classroom benchmarks; nothing to measure.")
