"""Drains the SQLite outbox to the broker; a row is marked sent only when its PUBACK accepts it.

Rules (all on the event loop thread):
- nothing is handed to paho while disconnected, and never more than `window` messages at once
  (paho's own queue is RAM only); what paho holds in flight at a disconnect it resends itself;
- on every connect the newest unsent position of each unit goes first, then the backlog in
  order. A message superseded by a newer one on the same topic is published with retain=false,
  so the retained position is always the newest fix;
- a PUBACK with a reason code >= 0x80 (0x87 not authorized, 0x97 quota exceeded, ...) keeps the
  row, logs once per (kind, reason), and retries that row after `REFUSED_RETRY_S`: no spinning;
- 0x10 "no matching subscribers" within `NO_SUBSCRIBER_GRACE_S` of a connect is not delivery
  either: a broker that just restarted has lost its subscribers' sessions, and what it accepts
  before they subscribe again goes nowhere. Such rows are retried every `NO_SUBSCRIBER_RETRY_S`
  until the grace window ends; after it, 0x10 counts as delivered (nobody is listening). The first
  such hold after a connect is logged once, and `held()` says why rows wait (`alkomctl status`).
  A message of a kind whose topic only ever says the latest (`contract.LATEST_ONLY_KINDS`: the audit
  head, a device's state) that a newer one on its topic has superseded is not held: a consumer that
  subscribes later is given the topic's retained message, the newer one (Mabes, which has no parent
  to read its audit head, held one row per audit record for a minute and sent each again every 2 s);
- a row the broker acknowledged but the database cannot mark sent (disk full) stays out of the
  window and is marked when the database takes writes again: it is not sent over and over;
- a message larger than the broker's Maximum Packet Size (MQTT 5 CONNACK) is never handed to
  paho: mosquitto drops the connection of a client that sends one, paho resends it first thing
  after every reconnect, and the link would flap for ever. It is kept, and looked at again after
  `REFUSED_RETRY_S` or at the next connect (the broker's limit may have changed).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import deque
from collections.abc import Callable

from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.link import Ack, publish_packet_size
from alkomd.daemon.records import utc_now
from alkomd.daemon.store.database import OutboxRow, Store, StoreError

log = logging.getLogger(__name__)

REFUSED_RETRY_S = 60.0
NO_SUBSCRIBER = 0x10
NO_SUBSCRIBER_GRACE_S = 60.0
NO_SUBSCRIBER_RETRY_S = 2.0
MARK_RETRY_S = 1.0
ACK_COMMIT_S = 0.05  # PUBACKs are marked sent in one transaction per this long (a commit's fsync is ~1 ms of the loop's)
HELD_NO_SUBSCRIBER = "no_subscriber"
HELD_REFUSED = "refused"
Send = Callable[[str, str, int, bool], int]  # (topic, payload, qos, retain) -> mid


class _Busy:
    """The rows `pump` must not hand out now: in flight, acknowledged and not yet marked sent, or held until later."""

    __slots__ = ("acked", "blocked", "inflight")

    def __init__(self, inflight: set[int], acked: set[int], blocked: dict[int, float]) -> None:
        self.inflight, self.acked, self.blocked = inflight, acked, blocked

    def __contains__(self, row_id: object) -> bool:
        return row_id in self.inflight or row_id in self.acked or row_id in self.blocked


class Publisher:
    def __init__(
        self, store: Store, loop: asyncio.AbstractEventLoop, window: int = 20, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self._loop = loop
        self._clock = clock
        self.window = window
        self.send: Send | None = None
        self.connected = False
        self.sent = 0
        self.refused = 0
        self.no_subscriber_retries = 0
        self.too_large = 0
        self.max_packet = 0  # the broker's Maximum Packet Size; 0: it did not say (no limit)
        self._too_large_ids: set[int] = set()  # rows held back for their size (looked at again on connect)
        self._connected_at = 0.0
        self._inflight: dict[int, int] = {}  # mid -> outbox row id
        self._priority: deque[OutboxRow] = deque()
        self._blocked: dict[int, float] = {}  # row id -> clock time of its next try
        self._retries: list[tuple[float, int]] = []  # heap of (time, row id) behind `_blocked` (stale entries skipped)
        self._latest_only: set[int] = set()  # rows in flight that a newer row on their topic supersedes (see above)
        self._acked: set[int] = set()
        self._commit_scheduled = False
        self._marks_failing = False
        self._refusals_logged: set[tuple[str, int]] = set()
        self._held: dict[int, str] = {}  # row id -> why it waits though the link is up: HELD_* below
        self._no_subscriber_logged = False  # this connect's hold for 0x10 is logged
        # Every unsent row with an id up to this one has been looked at since the connect: handed to paho, acknowledged,
        # or blocked (it comes back by id when its time is due). New rows have higher ids (Store.prune keeps the newest).
        self._cursor = 0

    # -- link events ---------------------------------------------------------------------------

    def on_connected(self, max_packet: int = 0) -> None:
        self.connected = True
        self.max_packet = max_packet
        for row_id in self._too_large_ids:  # this broker may take them: checking costs nothing
            self._blocked.pop(row_id, None)
        self._too_large_ids.clear()
        self._held = {i: why for i, why in self._held.items() if why == HELD_REFUSED}
        self._no_subscriber_logged = False
        self._connected_at = self._clock()
        self._priority = deque(self.store.newest_unsent_positions())
        self._cursor = 0
        self.pump()

    def on_disconnected(self) -> None:
        self.connected = False
        self._priority.clear()

    def on_ack(self, ack: Ack) -> None:
        row_id = self._inflight.pop(ack.mid, None)
        if row_id is None:
            return  # a message not from the outbox (state, health)
        now = self._clock()
        superseded = row_id in self._latest_only
        self._latest_only.discard(row_id)
        if ack.reason == NO_SUBSCRIBER and now - self._connected_at < NO_SUBSCRIBER_GRACE_S and not superseded:
            self.no_subscriber_retries += 1
            self._block(row_id, now + NO_SUBSCRIBER_RETRY_S)
            self._held[row_id] = HELD_NO_SUBSCRIBER
            self._loop.call_later(NO_SUBSCRIBER_RETRY_S, self.pump)
            if not self._no_subscriber_logged:
                self._no_subscriber_logged = True
                log.info(
                    "broker: no subscriber for a %s message (0x10) %.0f s after connecting: such messages are held in the "
                    "outbox and sent again every %.0f s until %.0f s after the connect (a restarted broker's consumers may "
                    "not have subscribed again yet), then taken as delivered",
                    self.store.outbox_kind(row_id), now - self._connected_at, NO_SUBSCRIBER_RETRY_S, NO_SUBSCRIBER_GRACE_S,
                )
        elif ack.reason < 0x80:
            self._held.pop(row_id, None)
            self._acked.add(row_id)
            if not self._commit_scheduled:
                self._commit_scheduled = True
                self._loop.call_later(ACK_COMMIT_S, self.commit_acks)
        else:
            self.refused += 1
            self._held[row_id] = HELD_REFUSED
            self._block(row_id, now + REFUSED_RETRY_S)
            self._loop.call_later(REFUSED_RETRY_S, self.pump)
            kind = self.store.outbox_kind(row_id)
            if (kind, ack.reason) not in self._refusals_logged:
                self._refusals_logged.add((kind, ack.reason))
                log.error(
                    "broker refused a %s message (reason 0x%02X %s): kept in the outbox, retried every %.0f s; "
                    "check the broker ACL for this station's topics",
                    kind, ack.reason, ack.reason_text, REFUSED_RETRY_S,
                )
        self.pump()

    def held(self) -> tuple[int, int, str]:
        """(rows held for 0x10, rows refused or too large, why in plain words): what waits though the link is up."""
        no_sub = sum(1 for why in self._held.values() if why == HELD_NO_SUBSCRIBER)
        refused = sum(1 for why in self._held.values() if why == HELD_REFUSED) + len(self._too_large_ids)
        parts = []
        if no_sub and self.connected:
            left = max(0.0, NO_SUBSCRIBER_GRACE_S - (self._clock() - self._connected_at))
            parts.append(
                f"{no_sub} held: the broker has no subscriber for them (0x10) since it was connected, sent again every "
                f"{NO_SUBSCRIBER_RETRY_S:g} s for {left:.0f} s more, then taken as delivered"
            )
        if refused:
            parts.append(f"{refused} refused by the broker (ACL, quota or size; see the log), tried again every {REFUSED_RETRY_S:g} s")
        return no_sub, refused, "; ".join(parts)

    def inflight_ids(self) -> set[int]:
        """Outbox rows handed to paho and not acknowledged yet (the disk budget leaves them alone)."""
        return set(self._inflight.values())

    def commit_acks(self) -> None:
        """Mark acknowledged rows sent (ACK_COMMIT_S after the first of them, and at stop). While the database refuses
        (disk full) they stay acknowledged in memory and out of the window, and the commit is retried: nothing is sent
        again meanwhile."""
        self._commit_scheduled = False
        ids = self._acked
        if not ids:
            return
        try:
            self.store.mark_sent(ids, utc_now())
        except StoreError as exc:
            if not self._marks_failing:
                self._marks_failing = True
                log.error("%s; %d acknowledged messages stay marked in memory, retrying every %.0f s", exc, len(ids), MARK_RETRY_S)
            self._commit_scheduled = True
            self._loop.call_later(MARK_RETRY_S, self.commit_acks)
            return
        if self._marks_failing:
            self._marks_failing = False
            log.info("acknowledged messages marked sent again (%d)", len(ids))
        self._acked = set()
        self.sent += len(ids)
        for i in ids:
            self._blocked.pop(i, None)
            self._held.pop(i, None)

    # -- draining ------------------------------------------------------------------------------

    def pump(self) -> None:
        """Fill the in-flight window from the outbox (cheap when there is nothing to do, however many rows are held)."""
        if not self.connected or self.send is None:
            return
        free = self.window - len(self._inflight)
        if free <= 0:
            return
        busy = _Busy(set(self._inflight.values()), self._acked, self._blocked)
        while free > 0 and self._priority:
            row = self._priority.popleft()
            if row.id not in busy:
                self._send(row)
                busy.inflight.add(row.id)
                free -= 1
        due = self._due(free) if free > 0 else []
        if due:  # held rows whose time has come: behind the cursor, read by id
            for row in self.store.outbox_rows(due):
                if row.id not in busy:
                    self._send(row)
                    busy.inflight.add(row.id)
                    free -= 1
        while free > 0:  # new rows, past the cursor: a PUBACK reads only what came since
            rows = self.store.unsent(free, busy, after=self._cursor)
            if not rows:
                break
            for row in rows:
                self._send(row)
                busy.inflight.add(row.id)
                free -= 1
            self._cursor = rows[-1].id

    def _block(self, row_id: int, until: float) -> None:
        self._blocked[row_id] = until
        heapq.heappush(self._retries, (until, row_id))

    def _due(self, limit: int) -> list[int]:
        """Up to `limit` held rows whose time has come, in id order, taken off the held ones (`pump` sends those still
        in the outbox and not in flight)."""
        now, heap, blocked = self._clock(), self._retries, self._blocked
        due: list[int] = []
        while heap and len(due) < limit and heap[0][0] <= now:
            at, row_id = heapq.heappop(heap)
            if blocked.get(row_id) == at:  # else stale: acknowledged since, or held again until later
                del blocked[row_id]
                due.append(row_id)
        return sorted(due)

    def _send(self, row: OutboxRow) -> None:
        assert self.send is not None
        m = row.message
        if self.max_packet and publish_packet_size(m.topic, m.payload) > self.max_packet:
            self._too_large(row)
            return
        superseded = m.retain and self.store.superseded(row)
        mid = self.send(m.topic, m.payload, m.qos, m.retain and not superseded)
        self._inflight[mid] = row.id
        if superseded and m.kind in contract.LATEST_ONLY_KINDS:
            self._latest_only.add(row.id)

    def _too_large(self, row: OutboxRow) -> None:
        """Keep a message the broker would disconnect us for; look at it again after `REFUSED_RETRY_S`."""
        self.too_large += 1
        self._too_large_ids.add(row.id)
        self._block(row.id, self._clock() + REFUSED_RETRY_S)
        self._loop.call_later(REFUSED_RETRY_S, self.pump)
        self._loop.call_soon(self.pump)  # its place in the window goes to the next message
        size = publish_packet_size(row.message.topic, row.message.payload)
        if (row.message.kind, 0x95) not in self._refusals_logged:
            self._refusals_logged.add((row.message.kind, 0x95))
            log.error(
                "a %s message of %d bytes exceeds the broker's maximum packet size (%d bytes): kept in the outbox, "
                "not sent; raise max_packet_size on the broker",
                row.message.kind, size, self.max_packet,
            )
