"""A history worker: stores the positions of the units below, taking its share through an MQTT 5 shared subscription.

Every worker of a node subscribes to `$share/<group>/<below>/unit/+/position` (contract.history):
the broker hands each position to ONE connected worker, so N workers split the flood N ways,
each with its own client id and persistent session. Nothing is lost: a position is acknowledged
to the broker (manual PUBACK) only after the transaction that stores it committed, so a worker
killed before that gets it again (or the broker gives it to another worker). Nothing is stored
twice: a redelivered position hits the history's unique key.

Threads: paho's network thread receives and only queues; this worker's own thread stores what
queued since the last batch in one transaction and then acknowledges it (batches grow with the
load: while one commits, the next gathers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from alkomd.daemon.config import Config, HistoryConfig
from alkomd.daemon.mqtt.client import make_client
from alkomd.daemon.mqtt.contract.history import HistoryFix, history_subscriptions, parse_history_fix
from alkomd.daemon.store.database import StoreError
from alkomd.daemon.store.history import HistoryStore

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.5  # the longest a worker sleeps with nothing queued (it wakes at once when something arrives)
PRUNE_INTERVAL_S = 3600.0
RETRY_STORE_S = 1.0


class HistoryWriter(Protocol):
    """What a worker writes through: the SQLite history file or the PostgreSQL history."""

    def add(self, fixes: Sequence[HistoryFix], worker: str, now: datetime) -> int: ...
    def prune(self, before: datetime) -> int: ...
    def close(self) -> None: ...


def open_history(hist: HistoryConfig, synchronous: str) -> HistoryWriter:
    """The history `[history]` names: PostgreSQL when `dsn` is set, else the SQLite file (raises StoreError)."""
    if hist.dsn:
        try:
            from alkomd.daemon.store.history_pg import PgHistoryStore
        except ImportError as exc:
            raise StoreError(f"[history] dsn is set but psycopg is not installed ({exc}): install it into alkomd's virtual "
                             "environment: pip install 'psycopg[binary]>=3.1,<4' (the postgres extra)") from exc
        return PgHistoryStore(hist.dsn)
    return HistoryStore(hist.path, synchronous)


def client_id(node: str, name: str) -> str:
    return f"alkomd-{node.replace('/', '-')}-history-{name}"


class HistoryWorker:
    """One worker process's MQTT session and batches (`run` until `stop` is set)."""

    def __init__(self, cfg: Config, hist: HistoryConfig, name: str) -> None:
        self.cfg = cfg
        self.name = name
        self.node = cfg.node.topic
        self.subscriptions = history_subscriptions(self.node, cfg.node.tier)
        self.store = open_history(hist, cfg.store.synchronous)
        self.retention = timedelta(days=hist.retention_days)
        self.stored = 0  # new rows this process wrote
        self.repeated = 0  # redeliveries the history already held
        self.unusable = 0  # positions without a usable place or time (acknowledged, counted, skipped)
        self.connected = False
        self._queue: deque[tuple[HistoryFix | None, int, int]] = deque()  # (fix, mid, qos), appended by paho's thread
        self._wake = threading.Event()
        self.stop = threading.Event()
        self.client = make_client(cfg.mqtt, client_id(self.node, name), hist.username, hist.password_file,
                                  persistent=True, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- paho's thread: queue, nothing else ----------------------------------------------------------

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, rc: ReasonCode, props: object = None) -> None:
        if rc.is_failure:
            log.error("history %s: the broker refused the connection: %s", self.name, rc.getName())
            return
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        if not self.connected:
            log.info("history %s: connected to %s:%d; taking its share of %s", self.name, self.cfg.mqtt.host, self.cfg.mqtt.port,
                     ", ".join(self.subscriptions))
        self.connected = True

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: object, rc: ReasonCode, props: object = None) -> None:
        if self.connected and not self.stop.is_set():
            log.warning("history %s: broker connection lost (%s); the broker keeps its share for its session", self.name, rc)
        self.connected = False

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        self._queue.append((parse_history_fix(self.node, msg.topic, bytes(msg.payload)), msg.mid, msg.qos))
        self._wake.set()

    # -- the worker's thread ---------------------------------------------------------------------------

    def run(self) -> None:
        """Connect, then store and acknowledge batches until `stop`; what is queued at the stop is stored first."""
        if self.cfg.mqtt.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.cfg.mqtt.session_expiry_s
            self.client.connect_async(self.cfg.mqtt.host, self.cfg.mqtt.port, keepalive=self.cfg.mqtt.keepalive_s,
                                      clean_start=False, properties=props)
        else:
            self.client.connect_async(self.cfg.mqtt.host, self.cfg.mqtt.port, keepalive=self.cfg.mqtt.keepalive_s)
        self.client.loop_start()
        next_prune = time.monotonic()
        try:
            while not self.stop.is_set():
                self._wake.wait(IDLE_WAIT_S)
                self._wake.clear()
                self._flush()
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + PRUNE_INTERVAL_S
                    self._prune()
            self._flush()
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            self.store.close()
            log.info("history %s: stopped; %d positions stored, %d repeated deliveries ignored, %d unusable skipped",
                     self.name, self.stored, self.repeated, self.unusable)

    def _flush(self) -> None:
        queue = self._queue
        batch = [queue.popleft() for _ in range(len(queue))]
        if not batch:
            return
        fixes = [f for f, _, _ in batch if f is not None]
        bad = len(batch) - len(fixes)
        if bad:
            if not self.unusable:
                log.warning("history %s: a position without a usable place or time was skipped (counted from now on)", self.name)
            self.unusable += bad
        while fixes:
            try:
                new = self.store.add(fixes, self.name, datetime.now(UTC))
                break
            except StoreError as exc:  # not acknowledged: the broker keeps the batch for this session meanwhile
                log.error("history %s: %s; trying again in %.0f s", self.name, exc, RETRY_STORE_S)
                if self.stop.wait(RETRY_STORE_S):
                    return
        else:
            new = 0
        self.stored += new
        self.repeated += len(fixes) - new
        for _, mid, qos in batch:
            self.client.ack(mid, qos)

    def _prune(self) -> None:
        try:
            gone = self.store.prune(datetime.now(UTC) - self.retention)
        except StoreError as exc:
            log.error("history %s: %s", self.name, exc)
            return
        if gone:
            log.info("history %s: %d positions older than %d days deleted", self.name, gone, self.retention.days)
