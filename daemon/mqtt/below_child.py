"""The child process that takes the units below's positions and statuses off the daemon's own connection and GIL.

With `[mqtt] below_connection = "separate"` a Polda or Mabes daemon starts this process
(daemon/mqtt/below_link.py). It holds a second MQTT connection (client id `<client id>-below`,
clean start: a reconnect gets the retained positions and statuses again by subscribing), subscribes
to the units below (`contract.below_unit_subscriptions`) and hands what arrives to the daemon
through a pipe, in batches of (topic, payload) in arrival order, every BATCH_S or BATCH messages.
It decodes nothing: the daemon takes the batches in as it takes its own (calls/below.py). What it
saves the daemon is paho's cost per message (most of following the units below) on the daemon's
GIL, where calls are handled: at 10,000 positions a second that is a third of a core.

Settle: when the daemon (re)connects it sends ("probe", nonce); once this process's subscriptions
are acknowledged, it publishes the nonce to `<node>/probe/below` (subscribed to itself) and, when it
comes back behind every retained message of its subscriptions, passes ("settled", nonce) down the
pipe behind them. A pipe that closes (the daemon stopped or died) ends this process.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from multiprocessing.connection import Connection

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from alkomd.daemon import __version__
from alkomd.daemon.config import MqttConfig
from alkomd.daemon.logsetup import setup_logging
from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.client import make_client
from alkomd.daemon.records import utc_now

log = logging.getLogger(__name__)

BATCH_S = 0.005  # the longest a position waits in this process
BATCH = 512  # messages per batch at most

Item = tuple[str, bytes]  # (topic, payload); topic "" marks a settle: payload is the probe that came back


class BelowChild:
    """The child's MQTT session and its queue to the pipe (paho's thread appends, the main thread sends)."""

    def __init__(self, mqtt: MqttConfig, node: str, tier: str, client_id: str, conn: Connection) -> None:
        self.node = node
        self.conn = conn
        self.subscriptions = contract.below_unit_subscriptions(node, tier)
        self.probe_topic = contract.below_probe_topic(node)
        self.queue: deque[Item] = deque()
        self.lock = threading.Lock()  # guards the pending nonce and `subscribed`
        self.pending = ""  # the nonce the daemon asked to settle with, not yet published
        self.subscribed = False  # this connection's subscriptions are acknowledged
        self._suback_mid: int | None = None  # this connection's SUBSCRIBE
        self.client = make_client(mqtt, client_id, mqtt.username, mqtt.password_file)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.host, self.port, self.keepalive = mqtt.host, mqtt.port, mqtt.keepalive_s

    # -- paho's thread ----------------------------------------------------------------------------------

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, rc: ReasonCode, props: object = None) -> None:
        if rc.is_failure:
            log.error("below link: the broker refused the connection: %s", rc.getName())
            return
        with self.lock:
            self.subscribed = False
        topics = [(t, contract.subscription_qos(t)) for t in (*self.subscriptions, self.probe_topic)]
        _, mid = client.subscribe(topics)
        self._suback_mid = mid

    def _on_subscribe(self, client: paho.Client, userdata: object, mid: int, codes: object, props: object = None) -> None:
        if mid != self._suback_mid:
            return
        with self.lock:
            self.subscribed = True
            nonce, self.pending = self.pending, ""
        if nonce:
            self._publish_probe(nonce)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        topic = msg.topic
        if topic == self.probe_topic:
            self.queue.append(("", bytes(msg.payload)))  # behind every retained message of this connection's subscriptions
            # (the payload is the probe as published: `contract.parse_probe` reads its nonce)
        else:
            self.queue.append((topic, bytes(msg.payload)))

    # -- the main thread --------------------------------------------------------------------------------

    def probe(self, nonce: str) -> None:
        """The daemon (re)connected: settle with this nonce (now, or once the subscriptions are acknowledged)."""
        with self.lock:
            if not self.subscribed:
                self.pending = nonce
                return
        self._publish_probe(nonce)

    def _publish_probe(self, nonce: str) -> None:
        self.client.publish(self.probe_topic, contract.link_probe_payload(nonce, utc_now(), __version__), qos=1)

    def run(self) -> None:
        """Forward batches until the pipe closes."""
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        queue, conn = self.queue, self.conn
        try:
            while True:
                if conn.poll(BATCH_S):
                    kind, nonce = conn.recv()
                    if kind == "probe":
                        self.probe(nonce)
                while queue:
                    batch = [queue.popleft() for _ in range(min(len(queue), BATCH))]
                    conn.send(batch)
        except (EOFError, OSError, BrokenPipeError):  # the daemon is gone: so is this process
            pass
        finally:
            self.client.disconnect()
            self.client.loop_stop()


def child_main(mqtt: MqttConfig, node: str, tier: str, client_id: str, conn: Connection, log_level: str) -> None:
    """The child process's entry point (multiprocessing, spawn)."""
    setup_logging(log_level)  # as the daemon's own: the journal shows both alike
    BelowChild(mqtt, node, tier, client_id, conn).run()
