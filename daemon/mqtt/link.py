"""The broker link: paho-mqtt 2.x (MQTT 5, QoS 1) on its own thread, events handed to asyncio.

Wraps paho's traps once:
- paho keeps unacknowledged messages in RAM only, so nothing is given to it unless connected,
  and never more than the in-flight window (the durable queue is the SQLite outbox);
- `publish()` return codes are not delivery: only the PUBACK (`on_publish`) is, and its reason
  code matters under MQTT 5 (>= 0x80 is a refusal such as 0x87 "not authorized");
- subscriptions are made again on every connect; the retained `<node>/state` "online" is
  published on every connect, and "offline" is the will (and is published on a clean stop);
- a subscription is in place only once the broker's SUBACK says so: `subscribed` is reported
  when every SUBACK of this connect is in (a refused one is logged, naming its topic filter);
- paho leaves Nagle's algorithm on: a small packet sent right after another (the call state
  right after the PUBACK of the call) then waits for the broker's delayed ACK, about 40 ms.
  The socket gets TCP_NODELAY as soon as paho opens it;
- paho ignores the broker's Maximum Packet Size (CONNACK): a bigger message makes mosquitto drop
  the connection, and paho sends it again first thing after every reconnect. Such a message is
  not handed to paho at all.

All callbacks reach the owner through `loop.call_soon_threadsafe`, never directly; incoming
messages through the `Inbox` (daemon/mqtt/inbox.py), which batches them: one wake-up of the loop
per batch, not per message, and calls never behind positions. paho's automatic PUBACK would
acknowledge a call as soon as it is queued, before it is stored: the client acknowledges by hand,
a call or an event once the inbox has handled it (a process killed before that gets it again from
its persistent session).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from alkomd.daemon.config import MqttConfig
from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.client import make_client
from alkomd.daemon.mqtt.inbox import Inbox
from alkomd.daemon.records import utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ack:
    """The broker's answer to one QoS 1 publish."""

    mid: int
    reason: int  # MQTT 5 reason code: < 0x80 accepted (0x10: accepted, no subscriber)
    reason_text: str


class LinkEvents:
    """What the link reports to its owner (all called on the event loop thread)."""

    def connected(self) -> None: ...

    def subscribed(self) -> None:
        """Every subscription of this connect is acknowledged (SUBACK): the broker has queued their retained messages."""

    def disconnected(self, reason: str) -> None: ...

    def acked(self, ack: Ack) -> None: ...

    def message(self, topic: str, payload: bytes, retain: bool) -> None:
        """One incoming message of the urgent lane (anything but the units below)."""

    def units_below(self, batch: list[tuple[str, bytes]]) -> None:
        """A batch of (topic, payload) the contract says are units' positions or statuses from nodes below."""


def _no_delay(client: paho.Client, userdata: object, sock: object) -> None:
    """Disable Nagle's algorithm on paho's socket (plain or TLS)."""
    setsockopt = getattr(sock, "setsockopt", None)
    if setsockopt is not None:
        try:
            setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not a TCP socket (a test double, a unix socket): nothing to tune
            pass


def publish_packet_size(topic: str, payload: str) -> int:
    """Bytes of the MQTT 5 PUBLISH packet (QoS 1, no properties) that carries this message."""
    size = len(topic.encode("utf-8")) + len(payload.encode("utf-8")) + 5  # topic length, packet id, properties length
    header = 2 if size < 128 else 3 if size < 16_384 else 4 if size < 2_097_152 else 5
    return header + size


class MqttLink:
    """One MQTT 5 session to the broker, reconnecting with backoff for as long as it runs."""

    def __init__(
        self,
        cfg: MqttConfig,
        node_topic: str,
        version: str,
        loop: asyncio.AbstractEventLoop,
        events: LinkEvents,
        subscriptions: tuple[str, ...] = (),
    ) -> None:
        self.cfg = cfg
        self.node_topic = node_topic
        self.version = version
        self._loop = loop
        self._events = events
        self.inbox = Inbox(loop, events.message, events.units_below, self._ack)
        self.subscriptions = subscriptions
        self.connected = False
        self.connected_since: datetime | None = None
        self.max_packet_size = 0  # the broker's Maximum Packet Size from its CONNACK (MQTT 5); 0: none given
        self._too_large: set[str] = set()
        self._suback_wait: dict[int, str] = {}  # mid -> topic filter of this connect's SUBSCRIBEs (paho thread only)
        self._sub_refused: list[str] = []  # topic filters whose SUBACK refused them (paho thread only)
        self._connection = 0  # connections made so far (paho thread; read by `_ack` on the loop's)
        self.last_error = ""
        self.client_id = cfg.client_id or "alkomd-" + (node_topic.replace("/", "-"))
        self.v5 = cfg.protocol == "5"
        c = make_client(cfg, self.client_id, cfg.username, cfg.password_file, persistent=True, manual_ack=True)
        c.max_inflight_messages_set(cfg.inflight)
        self._started = utc_now()
        will_props = None
        if self.v5 and cfg.will_delay_s:
            # The broker holds the will this long after the connection drops, and drops it when a process of this
            # node resumes the session first (a standby taking over): the parent then never sees "offline".
            will_props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
            will_props.WillDelayInterval = cfg.will_delay_s
        c.will_set(
            contract.state_topic(node_topic),
            contract.state_payload("offline", version, self._started),
            qos=1,
            retain=True,
            properties=will_props,
        )
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_connect_fail = self._on_connect_fail
        c.on_socket_open = _no_delay
        self.client = c

    # -- control (event loop thread) -----------------------------------------------------------

    def start(self) -> None:
        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.cfg.session_expiry_s
            self.client.connect_async(
                self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, clean_start=False, properties=props
            )
        else:  # MQTT 3.1.1: a persistent session (clean_session=False), no reason codes in PUBACKs
            self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    def publish(self, topic: str, payload: str, qos: int = 1, retain: bool = False) -> int:
        """Hand one message to paho; returns its mid (its PUBACK arrives as `acked`).

        A message larger than the broker's Maximum Packet Size is not sent (the broker would drop the
        connection, and paho would resend it after every reconnect): logged once per topic, mid 0.
        """
        if self.max_packet_size and publish_packet_size(topic, payload) > self.max_packet_size:
            if topic not in self._too_large:
                self._too_large.add(topic)
                log.error("mqtt: a message for %s is larger than the broker's maximum packet size (%d bytes): not sent",
                          topic, self.max_packet_size)
            return 0
        info = self.client.publish(topic, payload.encode("utf-8"), qos=qos, retain=retain)
        self.client.write_through()  # on the wire now, not when paho's thread gets the GIL (plain TCP)
        return info.mid

    def stop(self, timeout_s: float = 2.0) -> None:
        """Publish the retained "offline" state (if connected), disconnect, join the thread.

        With a will delay, the stop leaves "offline" to the will instead (DISCONNECT 0x04, "with will message"):
        the broker says it after the delay unless a standby or a restart of the node resumes the session first.
        """
        if self.v5 and self.cfg.will_delay_s:
            self.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
            self.client.loop_stop()
            return
        if self.connected:
            info = self.client.publish(
                contract.state_topic(self.node_topic),
                contract.state_payload("offline", self.version, utc_now()),
                qos=1,
                retain=True,
            )
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    # -- paho thread ---------------------------------------------------------------------------

    def _post(self, fn: Callable[..., None], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: we are shutting down
            pass

    def _on_connect(
        self, client: paho.Client, userdata: object, flags: paho.ConnectFlags, rc: ReasonCode, props: Properties | None
    ) -> None:
        if rc.is_failure:
            text = f"broker refused the connection: {rc.getName()}"
            if rc.value in (0x86, 0x87, 0x8C):
                text += " (check mqtt.username and the password file, and the broker's ACL)"
            self._post(self._set_error, text)
            return
        since = utc_now()
        self._connection += 1
        client.publish(
            contract.state_topic(self.node_topic),
            contract.state_payload("online", self.version, since),
            qos=1,
            retain=True,
        )
        self._suback_wait, self._sub_refused = {}, []  # a SUBACK of an earlier connection cannot arrive on this one
        for topic in self.subscriptions:
            err, mid = client.subscribe(topic, qos=contract.subscription_qos(topic))
            if err == paho.MQTT_ERR_SUCCESS and mid is not None:
                self._suback_wait[mid] = topic
        max_packet = int(getattr(props, "MaximumPacketSize", 0) or 0) if props is not None else 0
        self._post(self._set_connected, since, max_packet)
        if not self.subscriptions:
            self._post(self._set_subscribed, ())

    def _on_subscribe(
        self, client: paho.Client, userdata: object, mid: int, rcs: list[ReasonCode], props: Properties | None
    ) -> None:
        topic = self._suback_wait.pop(mid, None)
        if topic is None:
            return
        self._sub_refused += [f"{topic} ({rc.getName()})" for rc in rcs if rc.is_failure]
        if not self._suback_wait:
            self._post(self._set_subscribed, tuple(self._sub_refused))

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        self._post(self._set_disconnected, rc.getName() if rc is not None else "connection lost")

    def _on_connect_fail(self, client: paho.Client, userdata: object) -> None:
        self._post(self._set_error, "broker unreachable (connection refused, no route or DNS failure); retrying")

    def _on_publish(
        self, client: paho.Client, userdata: object, mid: int, rc: ReasonCode, props: Properties
    ) -> None:
        self._post(self._events.acked, Ack(mid, rc.value, rc.getName()))

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        # batched: one wake-up of the loop per batch; acknowledged by the inbox (subscriptions are at most QoS 1)
        self.inbox.put(msg.topic, bytes(msg.payload), msg.retain, self._connection << 16 | msg.mid if msg.qos == 1 else 0)

    def _ack(self, token: int) -> None:
        """PUBACK a QoS 1 message (the inbox calls it: on paho's thread for the bulk lane, on the loop's once handled).
        `token`: its connection number and packet id. One received on an earlier connection is not acknowledged: the
        broker sends it again on this one (its id may by now be another message's)."""
        if token >> 16 == self._connection:
            self.client.ack(token & 0xFFFF, 1)

    # -- back on the event loop thread ---------------------------------------------------------

    def _set_error(self, text: str) -> None:
        if text != self.last_error:
            log.error("mqtt %s:%d: %s", self.cfg.host, self.cfg.port, text)
            self.last_error = text

    def _set_connected(self, since: datetime, max_packet: int = 0) -> None:
        self.connected = True
        self.connected_since = since
        self.max_packet_size = max_packet
        self.last_error = ""
        log.info("mqtt: connected to %s:%d as %s", self.cfg.host, self.cfg.port, self.client_id)
        self._events.connected()

    def _set_subscribed(self, refused: tuple[str, ...]) -> None:
        if refused:
            log.error("mqtt: the broker refused %d subscriptions: %s (check the broker's ACL for this node)",
                      len(refused), ", ".join(refused))
        log.debug("mqtt: every subscription acknowledged")
        self._events.subscribed()

    def _set_disconnected(self, reason: str) -> None:
        was = self.connected
        self.connected = False
        self.connected_since = None
        if was and reason in ("Success", "Normal disconnection"):
            log.info("mqtt: disconnected from %s:%d", self.cfg.host, self.cfg.port)
        elif was:
            log.warning("mqtt: disconnected from %s:%d (%s); outbox keeps everything", self.cfg.host, self.cfg.port, reason)
        elif not self.last_error and reason not in ("Success", "Normal disconnection"):
            self._set_error(f"cannot connect ({reason})")  # unless the refusal itself was logged
        self._events.disconnected(reason)
