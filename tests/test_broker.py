"""The private test/demo broker: mosquitto on a free loopback port, and the embedded amqtt fallback."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from conftest import wait_until
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from alkomd.daemon.ctl.demo.broker import RESERVED_PORTS, Broker, BrokerError, free_port, port_open


@dataclass
class RoundTrip:
    connack: list[str] = field(default_factory=list)
    failed: bool = False
    received: list[tuple[str, bytes, bool]] = field(default_factory=list)


def round_trip(port: int, protocol: MQTTProtocolVersion, topic: str = "polri110/test/unit/R2-01/position") -> RoundTrip:
    """Connect, publish QoS 1 retained, then subscribe: the retained message must come back."""
    rt = RoundTrip()
    done = threading.Event()
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"t-{os.getpid()}-{time.monotonic_ns()}",
                    protocol=protocol)

    def on_connect(cl: paho.Client, ud: object, flags: object, reason: object, props: object = None) -> None:
        rt.connack.append(str(reason))
        rt.failed = bool(getattr(reason, "is_failure", False))
        done.set()

    def on_message(cl: paho.Client, ud: object, msg: paho.MQTTMessage) -> None:
        rt.received.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    c.on_connect = on_connect
    c.on_message = on_message
    c.connect("127.0.0.1", port, keepalive=10)
    c.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
        if rt.failed:
            return rt
        info = c.publish(topic, b'{"unit":"R2-01"}', qos=1, retain=True)
        info.wait_for_publish(10)
        assert info.is_published()
        c.subscribe(topic, qos=1)
        wait_until(lambda: bool(rt.received), what="the retained message")
    finally:
        c.disconnect()
        c.loop_stop()
    return rt


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_free_port_is_free_and_never_a_standard_mqtt_port() -> None:
    for _ in range(20):
        port = free_port()
        assert port not in RESERVED_PORTS
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port()))


def test_refuses_the_standard_ports(tmp_path: Path) -> None:
    for port in (1883, 8883):
        with pytest.raises(ValueError, match=str(port)):
            Broker("amqtt", port=port, workdir=tmp_path)
    with pytest.raises(ValueError, match="kind"):
        Broker("hivemq", workdir=tmp_path)


def test_mosquitto_serves_mqtt5_and_stops_without_leaving_a_process(tmp_path: Path) -> None:
    b = Broker(workdir=tmp_path / "b")
    assert b.kind == "mosquitto" and b.port not in RESERVED_PORTS
    with b:
        pid = b.pid
        assert pid is not None and b.running and port_open(b.host, b.port)
        rt = round_trip(b.port, MQTTProtocolVersion.MQTTv5)
        assert not rt.failed
        assert rt.received == [("polri110/test/unit/R2-01/position", b'{"unit":"R2-01"}', True)]
        assert not round_trip(b.port, MQTTProtocolVersion.MQTTv311).failed
    assert not b.running and b.pid is None
    assert not pid_alive(pid)
    assert not port_open(b.host, b.port)
    assert (tmp_path / "b" / "mosquitto.log").is_file()  # a given workdir is kept


def test_mosquitto_kill_and_restart_on_the_same_port(tmp_path: Path) -> None:
    with Broker("mosquitto", workdir=tmp_path) as b:
        port, pid = b.port, b.pid
        assert pid is not None
        b.kill()
        assert not b.running and not pid_alive(pid) and not port_open(b.host, port)
        b.restart()
        assert b.running and b.port == port and b.pid != pid
        assert not round_trip(b.port, MQTTProtocolVersion.MQTTv5).failed
        b.restart()  # restart while running: stop, then start on the same port
        assert b.running and b.port == port
        assert not round_trip(b.port, MQTTProtocolVersion.MQTTv5).failed


def test_port_taken_by_another_program_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        b = Broker("mosquitto", port=port, workdir=tmp_path, start_timeout_s=2)
        with pytest.raises(BrokerError, match="already in use"):
            b.start()
        assert not b.running


def test_mosquitto_start_failure_shows_the_end_of_its_log(tmp_path: Path) -> None:
    b = Broker("mosquitto", host="192.0.2.1", port=free_port(), workdir=tmp_path, start_timeout_s=5)  # TEST-NET: not ours
    with pytest.raises(BrokerError, match=r"(?s)exited with code \d+ on start:.*Error"):
        b.start()
    assert not b.running and b.pid is None


def test_own_temporary_directory_is_removed(tmp_path: Path) -> None:
    with Broker("mosquitto") as b:
        workdir = b.workdir
        assert workdir.is_dir()
    assert not workdir.exists()


def test_embedded_amqtt_serves_mqtt311_and_stops(tmp_path: Path) -> None:
    import amqtt  # noqa: F401  (a test dependency: a missing amqtt must fail, not skip)
    b = Broker("amqtt", workdir=tmp_path)
    with b:
        assert b.kind == "amqtt" and b.running and b.pid is None and port_open(b.host, b.port)
        rt = round_trip(b.port, MQTTProtocolVersion.MQTTv311)
        assert not rt.failed and rt.received == [("polri110/test/unit/R2-01/position", b'{"unit":"R2-01"}', True)]
        b.restart()
        assert b.running
        assert not round_trip(b.port, MQTTProtocolVersion.MQTTv311).failed
    assert not b.running and not port_open(b.host, b.port)
    assert not any(t.name == "amqtt-broker" for t in threading.enumerate())


def test_embedded_amqtt_refuses_mqtt5(tmp_path: Path) -> None:
    """amqtt 0.12 implements MQTT 3.1.1 only: an MQTT 5 client (the daemon) is refused at CONNECT.

    This documents why the demo prefers mosquitto. If a later amqtt speaks MQTT 5, this test
    fails: then the daemon can use the embedded broker too.
    """
    import amqtt  # noqa: F401  (a test dependency: a missing amqtt must fail, not skip)
    with Broker("amqtt", workdir=tmp_path) as b:
        rt = round_trip(b.port, MQTTProtocolVersion.MQTTv5)
    assert rt.failed and "protocol" in rt.connack[0].lower()


def test_embedded_amqtt_port_in_use_is_an_error(tmp_path: Path) -> None:
    import amqtt  # noqa: F401  (a test dependency: a missing amqtt must fail, not skip)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        b = Broker("amqtt", port=taken.getsockname()[1], workdir=tmp_path)
        with pytest.raises(BrokerError):
            b.start()
        assert not b.running
