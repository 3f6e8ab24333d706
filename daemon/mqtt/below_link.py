"""The daemon's side of the second connection for the units below: starts and watches the child, feeds its batches in.

`[mqtt] below_connection = "separate"` (Polda, Mabes): the child process (daemon/mqtt/below_child.py)
holds the connection and pipes the units below's positions and statuses, undecoded, in arrival
order. This side reads the pipe on the event loop (add_reader), puts them in the inbox's bulk lane
(taken in exactly as from the daemon's own connection, calls first), and passes a settle marker
on once everything before it is taken in. A child that dies is started again after RESTART_S (the
log says so); it is asked to settle with the latest nonce, so a connect that waits for it is not
held beyond the settle's own limit. The child ends when this side closes the pipe (a stop) or
this process dies (the pipe closes with it).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from alkomd.daemon.config import MqttConfig
from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.below_child import child_main
from alkomd.daemon.mqtt.inbox import Inbox

log = logging.getLogger(__name__)

RESTART_S = 1.0


class BelowLink:
    """The child and its pipe (event loop thread only)."""

    def __init__(self, mqtt: MqttConfig, node: str, tier: str, client_id: str, loop: asyncio.AbstractEventLoop, inbox: Inbox,
                 settled: Callable[[str], None], log_level: str) -> None:
        self._args = (mqtt, node, tier, client_id + "-below")
        self._loop = loop
        self._inbox = inbox
        self._settled = settled
        self._log_level = log_level
        self._conn: Connection | None = None
        self._proc: BaseProcess | None = None
        self._nonce = ""  # the latest settle asked for (sent again to a restarted child)
        self._stopping = False
        self.restarts = 0

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        ours, theirs = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=child_main, args=(*self._args, theirs, self._log_level), name="alkomd-below", daemon=True)
        proc.start()
        theirs.close()
        self._conn, self._proc = ours, proc
        self._loop.add_reader(ours.fileno(), self._readable)
        if self._nonce:
            self.probe(self._nonce)
        log.info("below link: child %d takes the units below on client id %s", proc.pid, self._args[3])

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None and self._conn is not None else None

    def probe(self, nonce: str) -> None:
        """The daemon (re)connected: the child settles with this nonce."""
        self._nonce = nonce
        if self._conn is not None:
            try:
                self._conn.send(("probe", nonce))
            except OSError:
                pass  # the child is gone: its restart sends it

    def _readable(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            while conn.poll():
                batch: list[tuple[str, bytes]] = conn.recv()
                start = 0
                for i, (topic, payload) in enumerate(batch):
                    if not topic:  # the settle marker: what came before it is taken in first
                        self._inbox.put_bulk(batch[start:i])
                        self._inbox.flush_bulk()
                        self._settled(contract.parse_probe(payload))
                        start = i + 1
                self._inbox.put_bulk(batch[start:] if start else batch)
        except (EOFError, OSError):
            self._lost()

    def _lost(self) -> None:
        self._close()
        if self._stopping:
            return
        code = self._proc.exitcode if self._proc is not None else None
        self.restarts += 1
        log.error("below link: the child ended (exit code %s); starting it again in %.0f s", code, RESTART_S)
        self._loop.call_later(RESTART_S, self._restart)

    def _restart(self) -> None:
        if not self._stopping:
            self.start()

    def _close(self) -> None:
        if self._conn is not None:
            self._loop.remove_reader(self._conn.fileno())
            self._conn.close()
            self._conn = None

    def stop(self) -> None:
        """Close the pipe: the child disconnects and ends; waits for it a little."""
        self._stopping = True
        self._close()
        if self._proc is not None:
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
