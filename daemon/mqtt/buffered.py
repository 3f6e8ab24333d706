"""paho's client with buffered reads: one recv for many messages instead of a select and three recvs for each one.

paho 2.x reads a packet as three `recv` calls on its socket (the command byte, the remaining
length, the rest) and, for QoS 0 messages, one packet per `select` (`loop_read`'s max_packets is
the number of messages in flight, usually 0). At 10,000 positions a second those four system calls
per message are most of the client's cost (bench/bench_ingest.py measures it). `BufferedClient`
overrides the one method paho reads its socket through (`_sock_recv`) to read up to READ_CHUNK
bytes at once and serve the three small reads from that buffer, and `loop_read` to handle every
packet the buffer still holds before paho goes back to `select` (the socket would not say they are
there). What reaches paho is byte for byte what the socket gave, in order: packet handling, QoS,
acknowledgements and reconnects stay paho's own. A new socket (a reconnect) starts with an empty
buffer; what was left of the old connection's bytes is dropped with it, as paho drops its packet.

The two overrides depend on paho's private `_sock_recv` and `_sock`: setup.cfg pins paho below 3,
and tests/test_mqtt_buffered.py checks the behaviour on the installed paho (split packets, a
reconnect, TLS is a socket like any other here).
"""

from __future__ import annotations

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

READ_CHUNK = 65536  # bytes asked of the socket at once (about 400 positions)


class BufferedClient(paho.Client):
    """A paho client whose socket reads go through a buffer; everything else is paho's."""

    _rbuf = b""
    _rpos = 0
    _rsock: object = None  # the socket the buffer's bytes came from

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rsock is not self._sock:  # a new connection: the old one's bytes are not its
            self._rbuf, self._rpos, self._rsock = b"", 0, self._sock
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(max(bufsize, READ_CHUNK))  # BlockingIOError and OSError go to paho as they are
            if len(data) <= bufsize:  # all of it is wanted (or b"": the connection is closed)
                return data
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        self._rpos = end = min(start + bufsize, len(self._rbuf))
        return self._rbuf[start:end]

    def buffered(self) -> int:
        """Bytes read from the socket and not yet handed to paho."""
        return len(self._rbuf) - self._rpos if self._rsock is self._sock else 0

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None and self.buffered():
            rc = super().loop_read(max_packets)
        return rc
