"""After each (re)connect, calls wait until the broker has delivered the retained `taken` markers: until the link's probe comes back.

Why: a call queued for this node while it was away may be one its parent took meanwhile; the
parent's retained `<node>/call/<id>/taken` says so, but the broker sends the queued calls first.
How: once every subscription of the connect is acknowledged (SUBACK), the daemon publishes a
probe carrying a fresh nonce to `<node>/probe/link`, which it subscribes to itself. mosquitto
queues a subscription's retained messages for the client while it handles the SUBSCRIBE, before
it reads the client's next packet, and delivers a client's QoS 1 messages in the order it queued
them; so when the probe is back, every retained marker is in (docs/contract/probe.md cites the
source). The SUBACK alone is not enough: mosquitto writes it before the retained messages.

With `[mqtt] below_connection = "separate"` the units below come over a second connection
(daemon/mqtt/below_child.py): the same nonce goes out there too, and calls wait for both probes, so
a held event that names a unit below finds its retained position and status in.

A probe of an earlier connection (paho sends an unacknowledged one again after a reconnect)
carries an older nonce and is ignored; a reconnect while calls are held gives a new nonce and
keeps them held. A probe that never comes back (an ACL that forbids it, a broker dropping
messages) holds calls at most `SETTLE_MAX_S` after the latest connect: then they are released
with a warning that names what was missing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

SETTLE_MAX_S = 10.0  # after a (re)connect, calls wait for the probe at most this long

T = TypeVar("T")  # what is held: the desk holds calls and events, as the actions that handle them


class Settle(Generic[T]):
    """The calls held since the latest connect, and the nonce whose probe releases them (event loop thread only)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, release: Callable[[list[T]], None], probe_topic: str,
                 max_s: float = SETTLE_MAX_S, below: bool = False) -> None:
        self._loop = loop
        self.below = below  # a second connection takes the units below: its probe must come back too
        self._release = release
        self.probe_topic = probe_topic
        self.max_s = max_s
        self.nonce = ""  # this connect's; "" before the first connect
        self.holding = False
        self.probe_sent = False  # this connect's SUBACKs are in and its probe went out
        self._own_back = False  # this connect's probe came back on the daemon's connection
        self._below_back = False  # ... and on the second connection (when there is one)
        self.held: list[T] = []
        self._since = 0.0  # monotonic time of the latest connect
        self._timer: asyncio.TimerHandle | None = None

    def link_up(self) -> None:
        """A (re)connect: hold calls until this connect's probe is back (calls already held stay held)."""
        self.nonce = secrets.token_hex(8)
        self.holding, self.probe_sent = True, False
        self._own_back = self._below_back = False
        self._since = time.monotonic()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(self.max_s, self._expired)

    def probe(self) -> str | None:
        """Every subscription is acknowledged: the nonce to publish now, or None when calls are not held (any more)."""
        if not self.holding:
            return None
        self.probe_sent = True
        return self.nonce

    def hold(self, item: T) -> bool:
        """Keep a call until the release; False when calls are not held now (handle it at once)."""
        if self.holding:
            self.held.append(item)
        return self.holding

    def came_back(self, nonce: str) -> None:
        """A probe on `<node>/probe/link` came back: this connect's releases the calls; an older one is ignored."""
        if not self.holding or not self.probe_sent or nonce != self.nonce:
            log.debug("mqtt: a probe of an earlier connection came back: ignored")
            return
        self._own_back = True
        self._maybe_end()

    def below_came_back(self, nonce: str) -> None:
        """The second connection's probe came back with `nonce`: the units below's retained messages are in."""
        if not self.holding or nonce != self.nonce:
            return
        self._below_back = True
        self._maybe_end()

    def _maybe_end(self) -> None:
        if not self._own_back or (self.below and not self._below_back):
            return
        log.info("mqtt: subscribed, and the probe came back %.0f ms after the connect: retained taken markers are in; "
                 "%d held calls go on", (time.monotonic() - self._since) * 1000, len(self.held))
        self._end()

    def _expired(self) -> None:
        self._timer = None
        if not self.holding:
            return
        if self._own_back:
            cause = ("the second connection's probe on <node>/probe/below did not come back (see the log of the below "
                     "link; the broker's ACL must let this node read and write it)")
        elif self.probe_sent:
            cause = (f"the probe on {self.probe_topic} did not come back (the broker's ACL must let this node read and "
                     "write it; or the broker dropped it)")
        else:
            cause = "the broker did not acknowledge every subscription (SUBACK), or the link went down before it did"
        log.warning("mqtt: no proof %.0f s after the connect that the retained taken markers are in: %s; %d held calls go on",
                    self.max_s, cause, len(self.held))
        self._end()

    def _end(self) -> None:
        self.holding = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self.held = self.held, []
        if held:
            self._release(held)
