"""A paho client set up from `[mqtt]`: protocol, reconnect delays, credentials and TLS, in one place."""

from __future__ import annotations

import ssl
from pathlib import Path

from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from alkomd.daemon.config import MqttConfig
from alkomd.daemon.mqtt.buffered import BufferedClient


def read_secret(path: str) -> str:
    """A secret file's content without its trailing newline (systemd credentials, 0600 files)."""
    with open(path, encoding="utf-8") as fh:
        return fh.read().rstrip("\r\n")


def make_client(
    mqtt: MqttConfig, client_id: str, username: str = "", password_file: Path | None = None, persistent: bool = False,
    manual_ack: bool = False,
) -> BufferedClient:
    """A paho 2.x client for `mqtt`'s broker; `persistent`: an MQTT 3.1.1 persistent session (MQTT 5 sets
    clean_start and the session expiry when it connects); `manual_ack`: QoS 1 messages are acknowledged by `ack`."""
    v5 = mqtt.protocol == "5"
    c = BufferedClient(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        clean_session=None if v5 else not persistent,
        manual_ack=manual_ack,
    )
    c.reconnect_delay_set(max(1, round(mqtt.reconnect_min_s)), max(1, round(mqtt.reconnect_max_s)))
    if username:
        c.username_pw_set(username, read_secret(str(password_file)) if password_file else None)
    if mqtt.tls:
        c.tls_set(
            ca_certs=str(mqtt.ca_file) if mqtt.ca_file else None,
            certfile=str(mqtt.cert_file) if mqtt.cert_file else None,
            keyfile=str(mqtt.key_file) if mqtt.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    return c
