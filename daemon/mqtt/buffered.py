"""paho's client with buffered reads and a lean QoS 0 PUBLISH: about half paho's own cost for each position message.

paho 2.x reads a packet as three `recv` calls on its socket (the command byte, the remaining
length, the rest) and, for QoS 0 messages, one packet per `select` (`loop_read`'s max_packets is
the number of messages in flight, usually 0). At 10,000 positions a second those four system calls
per message are a large part of the client's cost (bench/bench_ingest.py measures it).

`BufferedClient` gives paho its socket wrapped in a `BufferedSocket`, which reads up to READ_CHUNK
bytes at once and serves paho's small reads from them, and says how much it holds through
`pending()`: the hook paho already has for TLS, whose socket also holds bytes that `select` does
not see (paho then does not wait in `select` and reads on). `loop_read` handles up to
PACKETS_PER_READ packets from what is buffered before it returns, so paho's loop still gets to
its writes (PUBACKs, the daemon's own publishes) and keepalive between them under a flood. What
reaches paho is byte for byte what the socket gave, in order; packet handling, QoS,
acknowledgements and reconnects stay paho's own. A reconnect creates a new socket, hence a new,
empty buffer.

A QoS 0 PUBLISH without MQTT 5 properties (every position a node publishes) is turned into its
`MQTTMessage` here instead of by paho's `_handle_publish`, which builds a `Properties` object for
every MQTT 5 PUBLISH, even an empty one: 11 of the 20 us paho spends on each message. The message
is the same (topic, payload, retain, dup, timestamp); its `properties`, an empty
`Properties(PUBLISH)` as paho gives, is built when a callback first reads it. paho's own path still
handles everything else: QoS 1 and 2, a PUBLISH with properties, a malformed one, and every PUBLISH
while paho's logging is on (its DEBUG line formats the properties).

`write_through()` writes what `publish()` queued from the calling thread (the event loop's) at
once, instead of when paho's thread has woken up and got the GIL: on the call path that hop cost
0.4 ms at the median and up to 7 ms at p99 while positions flooded the machine
(bench/bench_calls.py). One lock keeps paho's thread and the caller from writing at the same
time, so packets go out whole and in order, and a reconnect holds it while it replaces the socket.
Plain TCP only: an SSL socket must not be written by one thread while another reads it. A write
that fails or would block leaves the rest queued, and paho's thread (woken by `publish()` as
always) writes it or handles the error.

Depends on paho's `_create_socket`, `_handle_publish`, `_packet_write`, `_in_packet`, `_sock`,
`_protocol` and `_logger` (setup.cfg pins paho below 3); tests/test_mqtt_buffered.py checks the
behaviour on the installed paho.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

READ_CHUNK = 65536  # bytes asked of the socket at once (about 400 positions)
PACKETS_PER_READ = 64  # packets handled from the buffer before paho's loop looks at its writes and timers again


class BufferedSocket:
    """A connected socket (plain or TLS) whose reads go through a buffer; every other attribute is the socket's."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            data: bytes = self.sock.recv(max(bufsize, READ_CHUNK))  # BlockingIOError and OSError go to paho as they are
            if len(data) <= bufsize:  # all of it is wanted (or b"": the connection is closed)
                return data
            self._buf, self._pos = data, 0
        start = self._pos
        self._pos = end = min(start + bufsize, len(self._buf))
        return self._buf[start:end]

    def pending(self) -> int:
        """Bytes read and not yet handed over, plus what a TLS socket holds decrypted."""
        inner = getattr(self.sock, "pending", None)
        return len(self._buf) - self._pos + (inner() if inner is not None else 0)

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


_PROPERTIES: Any = vars(paho.MQTTMessage)["properties"]  # the slot `_Received.properties` keeps its value in


class _Received(paho.MQTTMessage):
    """A received MQTT 5 QoS 0 message whose `properties` (none were sent) are built when first read."""

    __slots__ = ()

    @property
    def properties(self) -> Properties | None:
        value: Properties | None = _PROPERTIES.__get__(self)
        if value is None:
            value = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            _PROPERTIES.__set__(self, value)
        return value

    @properties.setter
    def properties(self, value: Properties | None) -> None:
        _PROPERTIES.__set__(self, value)


class BufferedClient(paho.Client):
    """A paho client whose socket reads go through a `BufferedSocket`, whose plain QoS 0 messages skip paho's
    `Properties`, and whose publishes can be written by the publishing thread (`write_through`); the rest is paho's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # held while packets are written, and while a reconnect replaces the socket (re-entrant: paho's blocking
        # connect() writes its CONNECT from inside reconnect())
        self._write_lock = threading.RLock()

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def reconnect(self) -> MQTTErrorCode:
        with self._write_lock:
            return super().reconnect()

    def _packet_write(self) -> MQTTErrorCode:
        with self._write_lock:
            return super()._packet_write()

    def write_through(self) -> None:
        """Write the queued packets from this thread now (after `publish()`; see the module docstring). Nothing happens
        over TLS, while not connected, or while paho's thread is writing or reconnecting: it writes them then."""
        sock = self._sock
        if not isinstance(sock, BufferedSocket) or isinstance(sock.sock, ssl.SSLSocket) or not self.is_connected():
            return
        if self._write_lock.acquire(blocking=False):
            try:
                if self._sock is sock:
                    super()._packet_write()  # an error puts the packet back; paho's thread meets it and handles it
            finally:
                self._write_lock.release()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        for _ in range(PACKETS_PER_READ - 1):
            sock = self._sock
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, BufferedSocket) or not sock.pending():
                break
            rc = super().loop_read(max_packets)
        return rc

    def _handle_publish(self) -> MQTTErrorCode:
        command: int = self._in_packet["command"]
        packet = cast(bytes, self._in_packet["packet"])  # paho builds it as bytes (its annotation says bytearray)
        if command & 0x06 or self.on_log is not None or self._logger is not None or len(packet) < 3:
            return super()._handle_publish()  # QoS 1 or 2, paho's logging, or too short to hold a topic: paho's way
        end = (packet[0] << 8 | packet[1]) + 2  # the topic's end
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        if end > len(packet) - v5 or (v5 and packet[end] != 0) or (end == 2 and not v5):
            return super()._handle_publish()  # properties, a topic longer than the packet, an empty MQTT 3 topic
        message = (_Received if v5 else paho.MQTTMessage)(0, packet[2:end])
        message.dup = bool(command & 0x08)
        message.retain = bool(command & 0x01)
        message.payload = packet[end + v5 :]
        message.timestamp = paho.time_func()
        self._handle_on_message(message)
        return MQTTErrorCode.MQTT_ERR_SUCCESS
