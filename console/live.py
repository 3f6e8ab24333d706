"""The WebSocket hub: one snapshot when a page connects, then the changes in batches (4 a second at most)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import asdict

from aiohttp import web

from alkomd.console.model import Changes, Model
from alkomd.daemon.records import utc_iso, utc_now

log = logging.getLogger(__name__)
BATCH_S = 0.25


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _link(model: Model) -> dict[str, object]:
    return asdict(model.link)


def _call(model: Model, call_id: str) -> dict[str, object]:
    out: dict[str, object] = asdict(model.calls[call_id]) if call_id in model.calls else {"call_id": call_id, "state": "unknown"}
    out["timeline"] = [asdict(t) for t in model.timeline(call_id)]
    return out


def snapshot(model: Model) -> str:
    return _dumps(
        {
            "type": "snapshot",
            "server_time": utc_iso(utc_now()),
            "units": [asdict(u) for u in model.units.values()],
            "calls": [_call(model, c) for c in model.calls],
            "alarms": [asdict(a) for a in model.alarms.values()],
            "link": _link(model),
        }
    )


def batch(model: Model, ch: Changes) -> str:
    body: dict[str, object] = {"type": "batch", "server_time": utc_iso(utc_now())}
    if ch.units:
        body["units"] = [asdict(model.units[u]) for u in ch.units if u in model.units]
    if ch.calls:
        body["calls"] = [_call(model, c) for c in ch.calls]
    if ch.alarms:
        body["alarms"] = [asdict(a) for a in model.alarms.values()]
    if ch.link:
        body["link"] = _link(model)
    if ch.results:
        body["results"] = [asdict(r) for r in ch.results]
    return _dumps(body)


class Hub:
    """The pages connected now; `run()` sends them what changed every BATCH_S seconds.

    Each page's WebSocket belongs to a session: while it is open the session stays alive (an officer watching the
    screen is active), and when the session ends (logout) its sockets are closed at the next turn.
    """

    def __init__(self, model: Model, alive: Callable[[str], bool]) -> None:
        self.model = model
        self.alive = alive
        self.sockets: dict[web.WebSocketResponse, str] = {}
        # pages whose snapshot is on its way: the batches taken meanwhile wait here, in order, and follow it
        self._joining: dict[web.WebSocketResponse, list[str]] = {}

    async def serve(self, ws: web.WebSocketResponse, token: str) -> None:
        """Send the snapshot, then keep the socket until the page goes (batches are sent by `run`).

        The snapshot is taken and the page starts collecting batches at the same instant (no await between): a change
        the snapshot missed is in a batch the page gets after it. (Registering the page only once the snapshot was
        sent lost the batches taken while it was on its way: under load the page never saw those units change.)"""
        text = snapshot(self.model)
        self._joining[ws] = []
        try:
            await ws.send_str(text)
            queued = self._joining[ws]
            while queued:
                await ws.send_str(queued.pop(0))
        finally:
            del self._joining[ws]
        self.sockets[ws] = token
        try:
            async for _msg in ws:  # the page sends nothing we act on; pings are answered by aiohttp
                pass
        finally:
            self.sockets.pop(ws, None)

    async def run(self) -> None:
        """Forever: a turn every BATCH_S; a turn that fails is logged with its traceback and the next one goes on."""
        while True:
            await asyncio.sleep(BATCH_S)
            try:
                await self._turn()
            except Exception:  # the supervision boundary of the pages' feed: never let it die silently
                log.exception("console: sending a batch to the pages failed")

    async def _turn(self) -> None:
        """Close the sockets of ended sessions, then send what changed to the others."""
        for ws, token in list(self.sockets.items()):
            if ws.closed or not self.alive(token):
                self.sockets.pop(ws, None)
                await ws.close()
        if self.model.changes.empty():
            return
        text = batch(self.model, self.model.take_changes())
        for queued in self._joining.values():
            queued.append(text)
        for ws in list(self.sockets):
            try:
                await ws.send_str(text)
            except (ConnectionError, RuntimeError) as exc:
                log.debug("console: a page went away: %s", exc)
                self.sockets.pop(ws, None)

    async def close_all(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
