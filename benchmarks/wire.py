"""Streamlit's WebSocket protocol for the benchmarks: record what a real browser sends to
the app, and replay it from light clients that render nothing.

A class on one 2-core machine cannot run 30 real browsers without taking the CPU from
the server it measures. So a real Chromium does each action once, on the real page (the
canvas component, the Train form), while CDP records the frames it sends; then many
`Client`s replay those frames, each in its own Streamlit session, and read the server's
answers (ForwardMsg protobufs). Run on its own this module checks the protocol's fields
(`check_protocol`) and measures nothing.

What this relies on is Streamlit's private browser protocol, as of streamlit==1.67.0
(requirements.txt's pin); an upgrade may change any of it:
- a WebSocket per session at STREAM_PATH, binary frames of serialized protobuf. The
  handshake replays the browser's `Sec-WebSocket-Protocol: streamlit, <XSRF token>`
  (the server echoes the first; the second must match the `_streamlit_xsrf` cookie; a
  third would resume that session, so a recording must have none), its `Cookie` header,
  and an `Origin` of the app's own URL;
- browser -> server: the recorded `BackMsg` frames, byte for byte: frames[0] a
  `rerun_script` (page load); classroom_train.py tells the Train page's poll by its
  `rerun_script.fragment_id`, classroom_server.py the drawing by the bytes
  `data:image/png` in it (the canvas component's widget value). A replayed frame claims
  the recording browser's `cached_message_hashes`: for those large elements the server
  sends a `ForwardMsg.ref_hash`, as it would to that browser;
- a fragment's id is a hash of its function and of its position on the page (the
  cursor's delta path when it is called), and a `rerun_script.fragment_id` the session
  does not have is dropped with one INFO line in the server's log ("The fragment with
  id ... does not exist anymore") and no answer at all. So a recorded fragment rerun only
  replays if the recording's page load laid the page out as every replayed one does. A
  fresh server's first runs do not: streamlit_app.py paints a loading line at the top
  of the page until TensorFlow is imported, which moves every fragment one place down.
  `record()` therefore loads the page once first, in a context of its own (so no cookie
  it gets, the student's identity among them, reaches the recording), until the page's
  run has ended (`stApp`'s `data-test-script-state`, RUN_ENDED_JS); `check_live` keeps
  the fragment ids a replayed page load has (`Delta.fragment_id`) in
  `Recording.fragments`, and `Recording.stale_fragments()` names the recorded reruns of
  any other;
- server -> browser: `ForwardMsg`, read as PROTOCOL below lists (new_session first,
  then deltas whose elements hold the answers, then script_finished);
- over HTTP: `/_stcore/health` (tools/app_server.py), the modules under `/static/` a
  page loads on first use, an answer's image at its `Image.url`;
- to record (Chromium's CDP, not Streamlit): `Network.webSocketWillSendHandshakeRequest`
  and `Network.webSocketFrameSent` (opcode 2: base64 `payloadData`).
`check_protocol()` (no server; tests/test_benchmarks.py) checks PROTOCOL against the
installed protos; `check_live()` checks a server accepts the recorded handshake and
answers a replayed page load as above. `record()` runs both, so a classroom benchmark
(and its `--quick` run) stops with a `ProtocolChanged` naming what changed, rather than
timing out or printing figures of a conversation that no longer happens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import common

TIMEOUT_S = 120
STREAM_PATH = "/_stcore/stream"
SUBPROTOCOL = "streamlit"

# What this module and the classroom benchmarks read of the protos, per root message: a
# path of fields, "type=NAME" for the case NAME of the oneof `type`, ":VALUE" an enum value.
PROTOCOL = {
    "ForwardMsg": (
        "type=new_session",
        "type=delta",
        "delta.fragment_id",
        "type=script_finished",
        "script_finished:FINISHED_SUCCESSFULLY",
        "script_finished:FINISHED_EARLY_FOR_RERUN",
        "script_finished:FINISHED_FRAGMENT_RUN_SUCCESSFULLY",
        "delta.new_element.type=exception",
        "delta.new_element.exception.message",
        "delta.new_element.type=metric",
        "delta.new_element.metric.label",
        "delta.new_element.metric.body",
        "delta.new_element.type=imgs",
        "delta.new_element.imgs.imgs.url",
        "delta.new_element.type=progress",
        "delta.new_element.progress.text",
    ),
    "BackMsg": ("type=rerun_script", "rerun_script.fragment_id"),
}
# The page's run has ended: Streamlit's frontend says so on the app's root element.
RUN_ENDED_JS = """() => document.querySelector('[data-testid="stApp"]')
  ?.getAttribute("data-test-script-state") === "notRunning" """


class ServerException(RuntimeError):
    """The app raised: the server sent an exception element."""


class ProtocolChanged(RuntimeError):
    """Streamlit no longer speaks the protocol these benchmarks replay."""

    def __init__(self, what: str):
        import streamlit

        pin = re.search(r"^streamlit==(\S+)", (common.ROOT / "requirements.txt").read_text(), re.M)
        super().__init__(
            f"Streamlit's WebSocket protocol changed (streamlit {streamlit.__version__}, "
            f"requirements.txt pins {pin[1] if pin else 'none'}): {what}. benchmarks/wire.py "
            "says what the classroom benchmarks rely on."
        )


def _missing(root, path: str) -> str | None:
    """What of `path` (a PROTOCOL entry) the descriptor `root` lacks, or None."""
    path, _, enum_value = path.partition(":")
    desc, where, fld = root, root.name, None
    for part in path.split("."):
        oneof, _, name = part.rpartition("=")
        fld = desc.fields_by_name.get(name) if desc is not None else None
        if fld is None:
            return f"{where} has no field {name!r}"
        if oneof and (fld.containing_oneof is None or fld.containing_oneof.name != oneof):
            return f"{where}.{name} is no longer a case of the oneof {oneof!r}"
        desc, where = fld.message_type, f"{where}.{name}"
    if enum_value and (fld.enum_type is None or enum_value not in fld.enum_type.values_by_name):
        return f"{where} has no enum value {enum_value!r}"
    return None


def check_protocol(protocol: dict[str, tuple[str, ...]] = PROTOCOL) -> None:
    """Raise ProtocolChanged naming every proto message, field, oneof case or enum value
    in `protocol` that the installed Streamlit lacks."""
    import importlib

    problems = []
    for message, paths in protocol.items():
        module = f"streamlit.proto.{message}_pb2"
        try:
            root = getattr(importlib.import_module(module), message).DESCRIPTOR
        except (ImportError, AttributeError) as e:
            problems.append(f"{module}.{message} is gone ({type(e).__name__}: {e})")
            continue
        problems += [p for p in (_missing(root, path) for path in paths) if p]
    if problems:
        raise ProtocolChanged("; ".join(problems))


@dataclass
class Recording:
    """What a real browser sent: its WebSocket handshake's cookie and subprotocols, every
    binary frame in order (frames[0] loads the page), and the paths it fetched over HTTP
    once the action started."""

    cookie: str
    protocols: list[str]
    frames: list[bytes]
    fetched: list[str] = field(default_factory=list)
    fragments: set[str] = field(default_factory=set)  # a replayed page load's (check_live)

    def static(self) -> list[str]:
        """The app's static files (JavaScript modules loaded on first use) it fetched."""
        return [path for path in self.fetched if path.startswith("/static/")]

    def stale_fragments(self) -> list[str]:
        """The fragment ids the recorded frames rerun that a replayed page load does not
        have (the server would drop those frames without an answer), in frame order."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        stale = []
        for frame in self.frames[1:]:
            msg = BackMsg()
            msg.ParseFromString(frame)
            fragment = (
                msg.rerun_script.fragment_id if msg.WhichOneof("type") == "rerun_script" else ""
            )
            if fragment and fragment not in self.fragments and fragment not in stale:
                stale.append(fragment)
        return stale


def _header(headers: dict, name: str) -> str:
    value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    if value is None:
        raise ProtocolChanged(f"the browser's WebSocket handshake has no {name} header")
    return value


async def record(
    url: str, path: str, ready: Callable[..., Awaitable], act: Callable[..., Awaitable]
) -> Recording:
    """Open url+path in Chromium, `await ready(page)`, then `await act(page)`, recording
    the frames sent from the start and the HTTP requests made during `act`; then check
    that a light client can replay the page load (`check_live`). The page is loaded once
    before, in another context, so that the server is warm: the recorded page load then
    lays the page out as a replayed one does (the module's docstring says why)."""
    check_protocol()
    async with common.chromium() as browser:
        warm, warm_page = await common.new_page(browser)
        await warm_page.goto(url + path, timeout=TIMEOUT_S * 1000)
        await ready(warm_page)
        await warm_page.wait_for_function(RUN_ENDED_JS, timeout=TIMEOUT_S * 1000)
        await warm.close()
        context, page = await common.new_page(browser)
        cdp = await context.new_cdp_session(page)
        handshakes, frames, fetched = [], [], []
        cdp.on("Network.webSocketWillSendHandshakeRequest", lambda e: handshakes.append(e))
        cdp.on("Network.webSocketFrameSent", lambda e: frames.append(e["response"]))
        await cdp.send("Network.enable")
        await page.goto(url + path, timeout=TIMEOUT_S * 1000)
        await ready(page)
        page.on("request", lambda r: fetched.append(urlsplit(r.url).path))
        await act(page)
    binary = [base64.b64decode(f["payloadData"]) for f in frames if f["opcode"] == 2]
    if not handshakes or not binary:
        raise SystemExit(f"could not record {path}: {len(binary)} frames sent")
    headers = handshakes[0]["request"]["headers"]
    protocols = [p.strip() for p in _header(headers, "Sec-WebSocket-Protocol").split(",")]
    rec = Recording(_header(headers, "Cookie"), protocols, binary, fetched)
    await check_live(url, rec)
    return rec


async def check_live(url: str, rec: Recording) -> None:
    """Raise ProtocolChanged unless the recorded handshake has the expected subprotocols,
    the server accepts it, and it answers the replayed page load with new_session,
    elements, then a successful finish."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    if rec.protocols[0] != SUBPROTOCOL or len(rec.protocols) != 2:
        raise ProtocolChanged(f"the browser's subprotocols are {rec.protocols[:1]} + tokens")
    seen: list[str] = []
    rec.fragments = set()

    def done(msg, element):
        seen.append(f"{msg.WhichOneof('type')}:{element_type(element) or ''}")
        if msg.WhichOneof("type") == "delta" and msg.delta.fragment_id:
            rec.fragments.add(msg.delta.fragment_id)
        return finished(msg, element)

    try:
        async with Client(url, rec) as client:
            await client.ws.send(rec.frames[0])
            status = await client.until(done, TIMEOUT_S)
            answered = client.ws.subprotocol
    except ServerException:
        raise
    except Exception as e:
        raise ProtocolChanged(f"a replayed page load got {seen[:4]}, then {e!r}") from e
    elements = any(kind.startswith("delta:") for kind in seen)
    ok = answered == SUBPROTOCOL and seen[0] == "new_session:" and elements
    if not ok or status != ForwardMsg.FINISHED_SUCCESSFULLY:
        raise ProtocolChanged(
            f"subprotocol {answered!r}; a replayed page load got {seen[:4]}...{seen[-1]} "
            f"({ForwardMsg.ScriptFinishedStatus.Name(status)})"
        )


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
                self.url.replace("http://", "ws://") + STREAM_PATH,
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
        An exception element from the server raises ServerException."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = max(deadline - time.monotonic(), 0.01)
            data = await asyncio.wait_for(self.ws.recv(), left)
            self.received_bytes += len(data)
            msg, element = parse(data)
            if element_type(element) == "exception":
                raise ServerException(f"server exception: {element.exception.message}")
            value = done(msg, element)
            if value is not None:
                return value


if __name__ == "__main__":
    check_protocol()
    print(
        "benchmarks/wire.py: helpers for the classroom benchmarks (the protocol's fields are "
        "there); nothing to measure."
    )
