"""Incoming MQTT messages from paho's thread to the event loop: one wake-up per batch, calls never behind positions.

paho calls `put` on its network thread for every message. A message of the bulk lane (what the
contract says is a unit's position or status from a node below: `contract.is_bulk_topic`) is
appended to a deque, and only the first one after a drain schedules the next drain, BULK_DELAY_S
later: at thousands of positions a second the loop wakes about a hundred times a second, not once
per message (one `call_soon_threadsafe` costs a pipe write and a loop turn, as much as taking the
position in). Every other message (calls, events, markers, the states of the nodes below) goes to
the urgent lane, which wakes the loop at once, also once per batch; a bulk drain works in slices
of SLICE_S and looks at the urgent lane between batches, so a call never waits behind a backlog
of positions.

Acknowledgement (the link's client acknowledges QoS 1 messages by hand): a message of the urgent
lane is acknowledged after its handler has returned, so a call or an event is in the database
before the broker forgets it. A process killed with one still queued or half handled gets it again
from its persistent session when it, or its standby, connects (the desk recognises one it already
stored). Not covered, on purpose: a call held for the settle after a connect, or waiting for a
database that refuses writes, is acknowledged while it waits. The broker sends a client at most its
inflight window of unacknowledged QoS 1 messages (mosquitto's max_inflight_messages, 20 by
default): calls held unacknowledged after a long absence would fill it, and the retained markers
and the probe that end the hold, queued behind them, would not come until the 10 s fallback; a
database refusing writes for an hour would stop every QoS 1 message to the node. The bulk lane is
acknowledged as it is queued: a unit's position or status is retained and refreshed all the time,
and holding thousands unacknowledged would stall the broker's flow to this node the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from alkomd.daemon.mqtt import contract

log = logging.getLogger(__name__)

BULK_DELAY_S = 0.01  # positions wait this long for the ones after them (10 ms at 10,000 a second: about 100 a batch)
SLICE_S = 0.02  # a drain gives the loop back after this long (timers, the control socket, other callbacks)
BATCH = 64  # bulk messages handed over at once

Message = tuple[str, bytes, bool, int]  # topic, payload, retained, what `ack` is given once it is handled (0: nothing)


class Inbox:
    """Two lanes from paho's thread to the loop; `urgent` gets one message, `bulk` a list of (topic, payload); `ack`
    acknowledges a QoS 1 message, given the token `put` was given with it (see the module docstring for when)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        urgent: Callable[[str, bytes, bool], None],
        bulk: Callable[[list[tuple[str, bytes]]], None],
        ack: Callable[[int], None] = lambda token: None,
    ) -> None:
        self._loop = loop
        self._on_urgent = urgent
        self._on_bulk = bulk
        self._ack = ack
        self._urgent: deque[Message] = deque()
        self._bulk: deque[tuple[str, bytes]] = deque()
        # True while a drain of that lane is due (set by whoever schedules one, cleared by the loop before it drains): at
        # most one drain per lane waits at a time, or a backlog would schedule one more every turn and starve the timers
        self._urgent_due = False
        self._bulk_due = False
        self._is_bulk = contract.is_bulk_topic

    def __len__(self) -> int:
        return len(self._urgent) + len(self._bulk)

    # -- paho's thread ----------------------------------------------------------------------------

    def put(self, topic: str, payload: bytes, retain: bool, ack: int = 0) -> None:
        """A message from paho's thread; `ack`: the token that acknowledges it (0: nothing to acknowledge, QoS 0)."""
        if self._is_bulk(topic):
            if ack:
                self._ack(ack)
            self._bulk.append((topic, payload))
            if not self._bulk_due:
                self._bulk_due = True
                self._post(self._bulk_soon)
        else:
            self._urgent.append((topic, payload, retain, ack))
            if not self._urgent_due:
                self._urgent_due = True
                self._post(self.drain_urgent)

    def put_bulk(self, items: list[tuple[str, bytes]]) -> None:
        """Bulk messages that came another way than paho's thread (the below link's pipe): on the loop thread."""
        self._bulk.extend(items)
        if items and not self._bulk_due:
            self._bulk_due = True
            self._loop.call_later(BULK_DELAY_S, self.drain_bulk)

    def _post(self, fn: Callable[[], None]) -> None:
        try:
            self._loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the loop is closed: we are shutting down
            pass

    # -- the event loop thread --------------------------------------------------------------------

    def _bulk_soon(self) -> None:
        self._loop.call_later(BULK_DELAY_S, self.drain_bulk)

    def drain_urgent(self, budget_s: float = SLICE_S) -> None:
        """Handle the urgent lane (within `budget_s`; the rest on the next loop turn)."""
        self._urgent_due = False  # before looking: a message put from now on schedules another drain
        self._handle_urgent(budget_s)
        if self._urgent and not self._urgent_due:  # one drain due at a time: paho's thread may have scheduled one
            self._urgent_due = True
            self._loop.call_soon(self.drain_urgent)  # after this turn's timers

    def _handle_urgent(self, budget_s: float) -> None:
        end = time.monotonic() + budget_s
        lane = self._urgent
        while lane:
            topic, payload, retain, ack = lane.popleft()
            try:
                self._on_urgent(topic, payload, retain)
            except Exception:  # supervision boundary: one message must not stop the intake
                log.exception("mqtt: message on %s could not be handled", topic)
            if ack:  # handled (stored), or failed for good: sent again, it would fail again
                self._ack(ack)
            if time.monotonic() >= end:
                break

    def drain_bulk(self, budget_s: float = SLICE_S) -> None:
        """Hand the bulk lane over in batches (within `budget_s`), the urgent lane first whenever it has something."""
        self._bulk_due = False
        end = time.monotonic() + budget_s
        lane = self._bulk
        while lane:
            if self._urgent:
                self._handle_urgent(budget_s)  # a drain of its own stays scheduled for what is left
            n = min(len(lane), BATCH)
            batch = [lane.popleft() for _ in range(n)]
            try:
                self._on_bulk(batch)
            except Exception:  # supervision boundary: the intake goes on with the next batch
                log.exception("mqtt: %d positions or statuses could not be handled", n)
            if time.monotonic() >= end:
                break
        if lane and not self._bulk_due:
            self._bulk_due = True
            self._loop.call_soon(self.drain_bulk)

    def flush_bulk(self) -> None:
        """Hand over the whole bulk lane now, urgent messages left where they are: before the node's probe to itself is
        acted on, every position and status that came before it (the retained ones of this connect) must be in."""
        lane = self._bulk
        while lane:
            batch = [lane.popleft() for _ in range(min(len(lane), BATCH))]
            try:
                self._on_bulk(batch)
            except Exception:  # supervision boundary: the intake goes on with the next batch
                log.exception("mqtt: %d positions or statuses could not be handled", len(batch))

    def drain_all(self) -> None:
        """Everything still queued, at once (at stop: the broker has the PUBACKs of these already)."""
        self.drain_urgent(float("inf"))
        self.drain_bulk(float("inf"))
