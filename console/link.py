"""The console's MQTT 5 session (paho on its own thread): follows the contract's topics, publishes officers' events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from alkomd.daemon.config import ConsoleConfig, MqttConfig
from alkomd.daemon.mqtt.client import make_client

log = logging.getLogger(__name__)


class LinkError(Exception):
    """The console cannot publish now (not connected to the broker)."""


class ConsoleLink:
    """A clean MQTT session: on every (re)connect it subscribes again and the broker sends the retained state anew."""

    def __init__(
        self,
        mqtt: MqttConfig,
        console: ConsoleConfig,
        client_id: str,
        subscriptions: tuple[str, ...],
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[str, bytes], None],
        on_up: Callable[[], None],
        on_down: Callable[[str], None],
    ) -> None:
        self.mqtt = mqtt
        self.subscriptions = subscriptions
        self.connected = False
        self._loop = loop
        self._on_message, self._on_up, self._on_down = on_message, on_up, on_down
        c = make_client(mqtt, client_id, console.username, console.password_file)
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_connect_fail = self._failed
        c.on_message = self._message
        self.client = c

    def start(self) -> None:
        self.client.connect_async(self.mqtt.host, self.mqtt.port, keepalive=self.mqtt.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: str) -> None:
        """QoS 1, not retained; raises LinkError when the broker is not reachable now (the officer is told)."""
        if not self.connected:
            raise LinkError("no connection to the broker")
        info = self.client.publish(topic, payload.encode("utf-8"), qos=1, retain=False)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise LinkError(f"publish failed: {paho.error_string(info.rc)}")

    # -- paho's thread: everything goes to the event loop ----------------------------------------

    def _post(self, fn: Callable[..., None], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: shutting down
            pass

    def _connected(
        self, client: paho.Client, userdata: object, flags: object, rc: ReasonCode, props: object = None
    ) -> None:
        if rc.is_failure:
            self._post(self._set_down, f"broker refused the connection: {rc}")
            return
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        self._post(self._set_up)

    def _disconnected(self, client: paho.Client, userdata: object, flags: object, rc: ReasonCode, props: object = None) -> None:
        self._post(self._set_down, f"broker connection lost: {rc}")

    def _failed(self, client: paho.Client, userdata: object) -> None:
        self._post(self._set_down, "cannot connect to the broker")

    def _message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        self._post(self._on_message, msg.topic, msg.payload)

    def _set_up(self) -> None:
        if not self.connected:
            log.info("console: connected to the broker %s:%d", self.mqtt.host, self.mqtt.port)
        self.connected = True
        self._on_up()

    def _set_down(self, reason: str) -> None:
        if self.connected:
            log.warning("console: %s", reason)
        self.connected = False
        self._on_down(reason)
