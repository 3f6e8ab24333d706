"""paho's client with buffered reads: one recv for many messages instead of a select and three recvs for each one.

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

Depends on paho's `_create_socket` (setup.cfg pins paho below 3); tests/test_mqtt_buffered.py
checks the behaviour on the installed paho.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

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


class BufferedClient(paho.Client):
    """A paho client whose socket reads go through a `BufferedSocket`; everything else is paho's."""

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        for _ in range(PACKETS_PER_READ - 1):
            sock = self._sock
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, BufferedSocket) or not sock.pending():
                break
            rc = super().loop_read(max_packets)
        return rc
