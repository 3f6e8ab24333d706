"""paho with buffered reads and a lean QoS 0 PUBLISH (daemon/mqtt/buffered.py): the same messages, from far fewer socket reads."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.mqtt.buffered import READ_CHUNK, BufferedClient, BufferedSocket
from tests.conftest import paho_thread_held, wait_until


class CountingSocket:
    """A socket whose reads are counted (paho reads through `recv`, selects on `fileno`)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reads = 0

    def recv(self, n: int) -> bytes:
        self.reads += 1
        return self.sock.recv(n)

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


def _packet(topic: bytes, payload: bytes, flags: int, props: bytes | None, pid: int = 9) -> bytes:
    """A PUBLISH packet with these header flags (dup 8, QoS 2/4, retain 1); `props`: MQTT 5 properties as packed (None:
    MQTT 3.1.1, no properties field)."""
    body = len(topic).to_bytes(2, "big") + topic + (pid.to_bytes(2, "big") if flags & 0x06 else b"") + (props or b"") + payload
    n, length = len(body), bytearray()
    while True:
        n, b = divmod(n, 128)
        length.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes([0x30 | flags]) + bytes(length) + body


def publish_packet(topic: str, payload: bytes, qos: int = 0, pid: int = 1) -> bytes:
    """An MQTT 5 PUBLISH packet (no properties)."""
    return _packet(topic.encode(), payload, qos << 1, b"\x00", pid)


def connected_pair(client: paho.Client) -> tuple[CountingSocket, socket.socket]:
    """Give `client` one end of a socketpair as its connected socket; returns it and the other end (the "broker")."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    counted = CountingSocket(ours)
    client._sock = BufferedSocket(counted) if isinstance(client, BufferedClient) else counted  # type: ignore[assignment]
    client._state = paho._ConnectionState.MQTT_CS_CONNECTED
    return counted, theirs


def v5(cls: type[paho.Client], client_id: str = "t") -> paho.Client:
    return cls(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)


def test_messages_already_waiting_are_read_in_a_few_socket_reads_and_handed_over_byte_for_byte() -> None:
    client = v5(BufferedClient)
    got: list[tuple[str, bytes]] = []
    client.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    ours, peer = connected_pair(client)
    sent = [(f"a/unit/U{i:04d}/position", b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 97))) for i in range(1000)]
    wire = b"".join(publish_packet(t, p) for t, p in sent)
    assert len(wire) < 150_000  # all of it fits the socket's buffer before the client reads
    peer.sendall(wire)
    while len(got) < len(sent):
        assert client._loop(5.0) == 0
    assert got == sent
    assert ours.reads <= len(wire) // READ_CHUNK + 3  # stock paho: three reads (and a select) per message
    peer.close()


def test_a_packet_split_across_reads_and_one_larger_than_the_buffer_arrive_whole() -> None:
    client = v5(BufferedClient)
    got: list[bytes] = []
    client.on_message = lambda c, u, m: got.append(m.payload)
    _, peer = connected_pair(client)
    big = bytes(range(256)) * 1000  # 256,000 bytes: several reads of READ_CHUNK
    small = b'{"lat":0.5}'
    wire = publish_packet("x/big", big, qos=1, pid=7) + publish_packet("x/small", small)
    cut = 3  # the command byte and part of the remaining length
    peer.sendall(wire[:cut])
    client._loop(1.0)
    assert got == [] and client._sock is not None and client._sock.pending() == 0

    def rest() -> None:
        peer.sendall(wire[cut:])

    writer = threading.Thread(target=rest)
    writer.start()
    while len(got) < 2:
        assert client._loop(5.0) == 0
    writer.join()
    assert got == [big, small]
    puback = peer.recv(64)  # the QoS 1 message was acknowledged, as paho does
    assert puback[:1] == b"\x40" and puback[2:4] == (7).to_bytes(2, "big")
    peer.close()


def _properties(**values: object) -> bytes:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    packed: bytes = props.pack()  # type: ignore[no-untyped-call]
    return packed


def _received(
    cls: type[paho.Client], protocol: MQTTProtocolVersion, wire: bytes, logger: bool = False
) -> tuple[list[tuple[object, ...]], int]:
    """What a client of `cls` hands its on_message for `wire` (each message's fields, its properties as JSON), and the
    return code of its loop once it is all read."""
    client = cls(callback_api_version=CallbackAPIVersion.VERSION2, client_id="t", protocol=protocol)
    if logger:
        client.enable_logger()
    got: list[tuple[object, ...]] = []

    def on_message(c: paho.Client, u: object, m: paho.MQTTMessage) -> None:
        props = m.properties
        got.append((m.topic, m.payload, m.qos, m.retain, m.dup, m.mid, type(props).__name__,
                    None if props is None else props.json()))  # type: ignore[no-untyped-call]

    client.on_message = on_message
    _, peer = connected_pair(client)
    peer.sendall(wire)
    peer.shutdown(socket.SHUT_WR)
    rc = 0
    for _ in range(len(wire)):  # at most a read per byte; a closed or broken link ends it
        rc = client._loop(1.0)
        if rc != 0:
            break
    peer.close()
    return got, int(rc)


@pytest.mark.parametrize("logger", [False, True], ids=["quiet", "paho-logging"])
@pytest.mark.parametrize("protocol", [MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311], ids=["v5", "v311"])
def test_every_message_is_handed_over_exactly_as_paho_hands_it_over(protocol: MQTTProtocolVersion, logger: bool) -> None:
    """The lean path takes plain QoS 0 messages; whatever it takes or leaves to paho, the callback sees paho's message."""
    v5_props = protocol == MQTTProtocolVersion.MQTTv5
    none = b"\x00" if v5_props else None
    some = _properties(ContentType="application/json", UserProperty=[("k", "v")]) if v5_props else None
    wire = b"".join([
        _packet(b"a/unit/U1/position", b'{"lat":1}', 0x00, none),  # the common case
        _packet(b"a/unit/U1/position", b'{"lat":2}', 0x01, none),  # retained
        _packet(b"a/unit/U1/position", b'{"lat":3}', 0x08, none),  # dup flag (meaningless at QoS 0, passed on)
        _packet(b"a/empty", b"", 0x01, none),  # an empty payload (a retained message cleared)
        _packet("a/unicodé/ü".encode(), b"\xff\x00binary", 0x00, none),
        _packet(b"a/with/properties", b"p", 0x00, some),  # MQTT 5 properties: paho's way
        _packet(b"a/qos1", b"q1", 0x02, none, pid=7),  # QoS 1: paho's way (and its PUBACK)
        _packet(b"a/qos1/retained", b"q1r", 0x03, some, pid=8),
    ])
    ours, rc_ours = _received(BufferedClient, protocol, wire, logger)
    paho_s, rc_paho = _received(paho.Client, protocol, wire, logger)
    assert len(ours) == 8 and ours == paho_s and rc_ours == rc_paho
    first = ours[0]
    assert first[:6] == ("a/unit/U1/position", b'{"lat":1}', 0, False, False, 0)
    assert first[6] == ("Properties" if v5_props else "NoneType")


@pytest.mark.parametrize("protocol", [MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311], ids=["v5", "v311"])
def test_a_malformed_publish_ends_the_link_as_paho_would(protocol: MQTTProtocolVersion) -> None:
    props = b"\x00" if protocol == MQTTProtocolVersion.MQTTv5 else b""
    good = _packet(b"a/ok", b"1", 0x00, props or None)
    too_long_topic = b"\x30\x05\x00\x40abc"  # says 64 topic bytes, holds 3
    empty_topic = b"\x30\x03\x00\x00" + props[:1] + (b"" if props else b"x")  # an empty topic without an alias
    for bad in (too_long_topic, empty_topic):
        ours, rc_ours = _received(BufferedClient, protocol, good + bad + good)
        paho_s, rc_paho = _received(paho.Client, protocol, good + bad + good)
        assert ours == paho_s and rc_ours == rc_paho
        assert len(ours) >= 1 and ours[0][1] == b"1"


def test_through_a_real_broker_and_a_restart_nothing_is_lost_or_mixed_up(tmp_path: Path) -> None:
    broker = Broker(kind="mosquitto", workdir=tmp_path / "broker")
    broker.start()
    try:
        sub = v5(BufferedClient)
        sub.reconnect_delay_set(1, 1)
        got: list[tuple[str, bytes]] = []
        lock = threading.Lock()

        def on_message(c: paho.Client, u: object, m: paho.MQTTMessage) -> None:
            with lock:
                got.append((m.topic, m.payload))

        subscribed = threading.Event()
        sub.on_message = on_message
        sub.on_connect = lambda c, u, f, rc, p: (subscribed.clear(), c.subscribe("t/#", qos=1))
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        pub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="pub")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        try:
            wait_until(subscribed.is_set, 20, "SUBACK")
            first = [(f"t/{i % 50}", b"%d" % i) for i in range(3000)]
            for t, p in first:
                pub.publish(t, p, qos=1)
            wait_until(lambda: len(got) >= len(first), 60, "the first flood")
            broker.restart()
            wait_until(subscribed.is_set, 60, "the subscriber back after the broker's restart")
            wait_until(pub.is_connected, 30, "the publisher back")
            second = [(f"t/{i % 50}", b"after %d" % i) for i in range(2000)]
            for t, p in second:
                pub.publish(t, p, qos=1)
            wait_until(lambda: len(got) >= len(first) + len(second), 60, "the second flood")
            with lock:
                assert got == first + second  # one publisher, QoS 1, no loss on the links: in order, none twice
        finally:
            pub.loop_stop()
            sub.loop_stop()
    finally:
        broker.close()


def test_under_a_flood_that_never_pauses_the_clients_own_publishes_still_go_out(tmp_path: Path) -> None:
    """The buffer is always refilled before it runs dry: paho's loop must still get to its writes between packets."""
    broker = Broker(kind="mosquitto", workdir=tmp_path / "broker")
    broker.start()
    stop = threading.Event()
    started: list[paho.Client] = []
    try:
        sub, watcher = v5(BufferedClient, "sub"), v5(paho.Client, "watcher")
        flooded, heard, sub_ready, watcher_ready = (threading.Event() for _ in range(4))
        sub.on_message = lambda c, u, m: flooded.set()
        sub.on_subscribe = lambda *a: sub_ready.set()
        watcher.on_message = lambda c, u, m: heard.set()
        watcher.on_subscribe = lambda *a: watcher_ready.set()
        for client, topic in ((sub, "flood/#"), (watcher, "out/ping")):
            client.connect("127.0.0.1", broker.port)
            client.subscribe(topic)
            client.loop_start()
            started.append(client)
        wait_until(lambda: sub_ready.is_set() and watcher_ready.is_set(), 20, "both SUBACKs")

        def flood() -> None:  # MQTT 3.1.1, QoS 0, written as fast as the broker takes it: faster than paho reads
            with socket.create_connection(("127.0.0.1", broker.port)) as s:
                body = b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x05flood"
                s.sendall(b"\x10" + bytes([len(body)]) + body)
                s.recv(4)
                chunk = b"".join(_v311(f"flood/{i % 100}", b'{"n":%d}' % i) for i in range(2000))
                while not stop.is_set():
                    s.sendall(chunk)

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        wait_until(flooded.is_set, 30, "the flood reaching the subscriber")
        sub.publish("out/ping", b"still here", qos=0)
        wait_until(heard.is_set, 60, "the subscriber's publish, sent while the flood goes on")
        assert flooder.is_alive()  # the flood never paused
    finally:
        stop.set()
        for client in started:
            client.loop_stop()
        broker.close()


def test_a_publish_written_through_goes_out_while_pahos_thread_is_busy(tmp_path: Path) -> None:
    """`write_through` writes a publish from the publishing thread: it reaches a subscriber while paho's own thread is
    held in a callback. Without it the packet waits in paho's queue for that thread; the PUBACK is paho's as usual."""
    broker = Broker(kind="mosquitto", workdir=tmp_path / "broker")
    broker.start()
    started: list[paho.Client] = []
    try:
        pub, watcher = v5(BufferedClient, "pub"), v5(paho.Client, "watcher")
        heard: list[bytes] = []
        watcher.on_message = lambda c, u, m: heard.append(m.payload)
        acks = []
        for client, topic in ((pub, "hold/now"), (watcher, "out/#")):
            ack = threading.Event()
            client.on_subscribe = lambda *a, ack=ack: ack.set()
            client.connect("127.0.0.1", broker.port)
            client.subscribe(topic, qos=1)
            client.loop_start()
            started.append(client)
            acks.append(ack)
        wait_until(lambda: all(a.is_set() for a in acks), 20, "both SUBACKs")
        with paho_thread_held(pub, watcher) as held:
            info = pub.publish("out/through", b"now", qos=1)
            assert len(pub._out_packet) == 1  # paho's thread is held: nobody has written it yet
            pub.write_through()
            assert not pub._out_packet
            wait_until(lambda: heard == [b"now"], 20, "the message written by the publishing thread")
            assert held.is_set() and not info.is_published()  # the PUBACK waits for paho's thread, as ever
        wait_until(info.is_published, 20, "the PUBACK, read by paho's thread once it is free")
    finally:
        for client in started:
            client.loop_stop()
        broker.close()


def _v311(topic: str, payload: bytes) -> bytes:
    """An MQTT 3.1.1 QoS 0 PUBLISH packet."""
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + payload
    return b"\x30" + bytes([len(body)]) + body
