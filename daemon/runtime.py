"""The daemon's composition root: builds the parts from the config, runs them on one event loop, stops them cleanly.

One asyncio event loop owns all mutable state (station, store, publisher) and all timers. Each
device driver runs in its own thread and hands records to the loop with `call_soon_threadsafe`;
paho runs its network loop in its own thread the same way. SIGTERM and SIGINT stop everything
within a few seconds: drivers are told to stop (reads time out every 0.25 s), pending records
are committed, the link publishes "offline" and disconnects. SIGHUP reloads the configuration
file (`daemon/reload.py` says what changes live); the control socket (`daemon/control.py`)
answers `alkomctl status|units|devices`. Before it opens anything of the node, it takes the node's
lock (`daemon/standby.py`): while another process of the node holds it, this one is its standby.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from alkomd.daemon import __version__, gcpolicy, reload
from alkomd.daemon.calls.desk import CallDesk, separate_below
from alkomd.daemon.calls.jurisdictions import JurisdictionIndex
from alkomd.daemon.config import Config
from alkomd.daemon.control import ControlServer, ReloadInfo, socket_path
from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.below_link import BelowLink
from alkomd.daemon.mqtt.link import Ack, LinkEvents, MqttLink
from alkomd.daemon.mqtt.publisher import Publisher
from alkomd.daemon.positions.batch import StatusRequest
from alkomd.daemon.positions.station import Station
from alkomd.daemon.queries import Queries
from alkomd.daemon.records import Record, SteadyClock, utc_iso, utc_now
from alkomd.daemon.schema import ConfigError
from alkomd.daemon.sdnotify import Notifier
from alkomd.daemon.standby import NodeLock, lock_path, stand_by
from alkomd.daemon.store.audit import AuditEntry
from alkomd.daemon.store.budget import OutboxBudget
from alkomd.daemon.store.database import Store
from alkomd.daemon.supervisor import Supervisor

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 3600.0
CLEAR_INTERVAL_S = 5.0  # how often retained topics due for clearing (closed calls, taken markers) are cleared
AVAILABILITY_TICK_S = 1.0


class Runtime(LinkEvents):
    """The running daemon for one config."""

    def __init__(self, cfg: Config, jurisdictions: JurisdictionIndex | None = None, log_level_override: str | None = None) -> None:
        self.cfg = cfg
        self.jurisdictions = jurisdictions
        self.log_level_override = log_level_override  # --log-level wins over [log] level, also on reload
        self.started_mono = time.monotonic()
        self.started_at = self.link_since = utc_now()
        self.last_reload: ReloadInfo | None = None
        self.stop_event = asyncio.Event()
        self._link_up = False
        self.jurisdictions_fp = reload.fingerprint(cfg)
        self.drivers = Supervisor(self._emit)
        self._reload_task: asyncio.Task[None] | None = None
        self._reload_again = False
        self.ready = False
        self.notify = Notifier()
        self.clock = SteadyClock()
        self.below_link: BelowLink | None = None  # `[mqtt] below_connection = "separate"`
        self.took_over: datetime | None = None  # when this process took over as the active one (it waited as a standby)
        self._reload_when_ready = False  # a SIGHUP came before the daemon was ready: reload once it is
        self._config_stat = _stat(cfg.source)

    # LinkEvents (called on the loop thread by MqttLink)
    def connected(self) -> None:
        self._link_changed(True)
        self.desk.link_up()
        self.publisher.on_connected(self.link.max_packet_size)
        self._status()

    def subscribed(self) -> None:
        """Every SUBACK is in: send the probe whose return releases the calls held since the connect (calls/settle.py)."""
        nonce = self.desk.probe()
        if nonce is not None:
            self.link.publish(contract.link_probe_topic(self.cfg.node.topic), contract.link_probe_payload(nonce, utc_now(), __version__))
            if self.below_link is not None:
                self.below_link.probe(nonce)

    def disconnected(self, reason: str) -> None:
        self._link_changed(False)
        self.publisher.on_disconnected()
        self._status()

    def _link_changed(self, up: bool) -> None:
        if up != self._link_up:
            self._link_up = up
            self.link_since = utc_now()

    def _status(self) -> None:
        """Tell systemd what a person should see; nothing more once STOPPING=1 was sent."""
        if not self.stop_event.is_set():
            self.notify.status(self.status_line())

    def status_line(self) -> str:
        """One line for `systemctl status`: broker link, outbox, devices (naming those not connected)."""
        broker = "broker connected" if self.link.connected else "broker unreachable: recording locally"
        states = [s.state.value for s in self.station.device_status.values()]
        ok = sum(1 for s in states if s == "connected")
        bad = [f"{d} {s.state.value}" for d, s in self.station.device_status.items() if s.state.value != "connected"]
        more = f" ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''})" if bad else ""
        return f"{broker}; outbox {self.store.outbox_depth()}; devices {ok}/{len(self.drivers.running)} connected{more}"

    def acked(self, ack: Ack) -> None:
        self.publisher.on_ack(ack)

    def message(self, topic: str, payload: bytes, retain: bool) -> None:
        """Route one incoming message by what the contract says its topic is (the link's inbox hands them over in
        batches and in slices, so a flood cannot starve the loop's timers: watchdog pings, answer deadlines)."""
        what = contract.parse_inbound(self.cfg.node.topic, topic)
        if isinstance(what, contract.UnitBelow):
            self.desk.below(what, payload)  # retained or not: the units below are what their nodes last said
        elif isinstance(what, contract.NodeBelowAnchor):
            self._keep_anchor(what.node, payload)
        elif isinstance(what, contract.CallTaken | contract.NodeBelowState | contract.NodeBelowCall):
            self._supervision(what, payload)  # retained markers and states are what the broker holds now
        elif what is None or retain:  # a retained call or event would replay an old call at every reconnect
            log.debug("mqtt: ignored message on %s", topic)
        elif isinstance(what, contract.LinkProbe):
            self.link.inbox.flush_bulk()  # the units below's retained positions and statuses came before it: take them in
            self.desk.probe_back(payload)  # behind every retained message of this connect's subscriptions
        elif isinstance(what, contract.StatusSet):
            self.station.submit(StatusRequest(what.unit, payload))
        elif isinstance(what, contract.CallNew):
            self.desk.call_new(payload)
        elif isinstance(what, contract.CallAml):
            self.desk.call_aml(payload)
        else:
            self.desk.event(what.call_id, payload)

    def units_below(self, batch: list[tuple[str, bytes]]) -> None:
        """A batch of the units below's positions and statuses (the inbox's bulk lane)."""
        for topic, payload in self.desk.follow.take(batch):  # a topic that only looked like one: the usual route
            self.message(topic, payload, False)

    def _keep_anchor(self, node: str, payload: bytes) -> None:
        """A node below published its audit chain's end: keep it; a chain that went back is an alarm on record."""
        head = contract.parse_audit_head(payload)
        if head is None:
            return
        now = utc_now()
        before = self.store.keep_anchor(node, head, now)
        if before is None or head.count > before.count or (head.count == before.count and head.hash == before.hash):
            return
        detail = json.dumps({"node": node, "before": [before.count, before.hash], "now": [head.count, head.hash]})
        log.error("node %s: its audit record went back from %d to %d entries (or was rewritten): its database was cut "
                  "short or restored from an older copy", node, before.count, head.count)
        self.store.record([], [], now, [AuditEntry(now, "node.audit_rollback", "", "", detail)])
        self.publisher.pump()

    def _supervision(self, what: contract.CallTaken | contract.NodeBelowState | contract.NodeBelowCall, payload: bytes) -> None:
        if isinstance(what, contract.CallTaken):
            self.desk.taken(what.call_id, payload)
        elif isinstance(what, contract.NodeBelowState):
            self.desk.node_below_state(what.node, payload)
        else:
            self.desk.node_below_call(what.node, what.call_id, payload)

    def request_stop(self) -> None:
        self.stop_event.set()

    def request_reload(self) -> None:
        """SIGHUP: reload the configuration file; a SIGHUP during a reload runs one more after it."""
        if self.stop_event.is_set():
            return
        if not self.ready:  # starting, or waiting as a standby: the parts a reload changes do not exist yet
            self._reload_when_ready = True
            log.info("reload: the configuration is read again once this process is ready")
            return
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_again = True
            return
        self._reload_task = asyncio.create_task(self._reload(), name="reload")

    async def _reload(self) -> None:
        again = True
        while again and not self.stop_event.is_set():
            self._reload_again = False
            usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000  # systemd >= 253 wants it with RELOADING=1
            self.notify.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the configuration")
            try:
                self.last_reload = await self._reload_once()
            except Exception:  # supervision boundary: a reload that fails half way must not stop the daemon
                log.exception("reload: failed while applying; the daemon runs on (restart it to be sure of its configuration)")
                self.last_reload = ReloadInfo(utc_iso(utc_now()), False, "failed while applying: see the log")
            finally:
                if not self.stop_event.is_set():
                    self.notify.send("READY=1", f"STATUS={self.status_line()}")
            again = self._reload_again

    async def _reload_once(self) -> ReloadInfo:
        path = self.cfg.source
        log.info("reload: reading %s", path)
        try:
            loaded = await asyncio.get_running_loop().run_in_executor(None, reload.load, path)
        except ConfigError as exc:
            log.error("reload: config error: %s; keeping the running configuration", exc)
            return ReloadInfo(utc_iso(utc_now()), False, str(exc))
        plan = reload.plan(self.cfg, loaded.config, self.jurisdictions_fp, loaded.fingerprint)
        summary = plan.summary()
        if plan.needs_restart:
            restart = ", ".join(plan.needs_restart)
            log.warning("reload: needs a restart: %s (not applied; systemctl restart alkomd)", restart)
            summary += f"; needs a restart: {restart}"
        await reload.apply(plan, loaded, self.drivers, self.station, self.desk, self.log_level_override, self.stop_event.is_set)
        if not self.stop_event.is_set():
            self.cfg = plan.config
            if plan.jurisdictions:
                self.jurisdictions, self.jurisdictions_fp = loaded.jurisdictions, loaded.fingerprint
        log.info("reload: %s", plan.summary())
        return ReloadInfo(utc_iso(utc_now()), True, summary)

    async def run(self) -> int:
        cfg = self.cfg
        loop = self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        self.lock = NodeLock(lock_path(cfg.store.path))
        if not self.lock.try_acquire():
            if not await stand_by(self.lock, cfg, self.notify, self.stop_event.is_set):
                log.info("stopped while waiting as a standby")
                return 0
            self.took_over = utc_now()
            if _stat(cfg.source) != self._config_stat or reload.fingerprint(cfg) != self.jurisdictions_fp:
                self._reload_when_ready = True  # changed while this process waited: apply it as a reload would
        self.store = Store(cfg.store.path, cfg.store.synchronous, background_checkpoint=True)
        self.publisher = Publisher(self.store, loop, cfg.mqtt.inflight)
        self.budget = OutboxBudget(self.store, lambda: self.cfg.store.outbox_budget_bytes, self.publisher.inflight_ids)
        self.store.anchor = lambda head: contract.audit_head_message(cfg.node.topic, head)
        # The anchor again at every start: a database put back to an older copy says so at once, not at its next entry.
        self.store.record([], [contract.audit_head_message(cfg.node.topic, self.store.audit_head(utc_now()))], utc_now())
        self.station = Station(cfg, self.store, self.publisher, loop, now=self.clock)
        self.desk = CallDesk(cfg, self.store, self.station, self.publisher, loop, self.clock, self.jurisdictions)
        self.station.on_committed = self.desk.units_changed
        self.station.on_emergency = self.desk.emergency
        self.station.on_device_change = self._status  # STATUS= follows device states at once
        subscriptions = contract.subscriptions(cfg.node.topic, cfg.node.tier, below_units=not separate_below(cfg))
        self.link = MqttLink(cfg.mqtt, cfg.node.topic, __version__, loop, self, subscriptions)
        if separate_below(cfg):
            self.below_link = BelowLink(cfg.mqtt, cfg.node.topic, cfg.node.tier, self.link.client_id, loop, self.link.inbox,
                                        self.desk.below_probe_back, self.log_level_override or cfg.log.level)
            self.below_link.start()
        self.publisher.send = self.link.publish
        for dev in cfg.devices:
            if not dev.enabled:
                log.info("%s: disabled in the config", dev.id)
                continue
            self.drivers.start(dev)
        self.control = ControlServer(socket_path(cfg.store.path), Queries(self).handlers())
        await self.control.start()
        self.link.start()
        tasks = [
            asyncio.create_task(self._every(cfg.mqtt.health_interval_s, self._publish_health), name="health"),
            asyncio.create_task(self._every(PRUNE_INTERVAL_S, self._prune), name="prune"),
            asyncio.create_task(self._every(CLEAR_INTERVAL_S, self._clear_retained), name="clear-retained"),
            asyncio.create_task(self.budget.run(), name="outbox-budget"),
            asyncio.create_task(self._every(AVAILABILITY_TICK_S, self.station.tick), name="availability"),
            asyncio.create_task(self._every(gcpolicy.FULL_INTERVAL_S, gcpolicy.collect_full), name="gc"),
        ]
        if cfg.node.tier != "polres":
            tasks.append(asyncio.create_task(self.desk.follow.keep_snapshot(), name="units-below-snapshot"))
        if self.notify.watchdog_s:
            # Pinged from the event loop itself: a loop that stops turning stops the pings.
            tasks.append(asyncio.create_task(self._every(self.notify.watchdog_s / 2, self.notify.watchdog), name="watchdog"))
        gcpolicy.settle()
        self.ready = True
        self.notify.ready(self.status_line())
        log.info(
            "alkomd %s ready: node %s (%s), %d devices, %d units, database %s, broker %s:%d%s",
            __version__, cfg.node.topic, cfg.node.tier, len(self.drivers.running), len(cfg.units), cfg.store.path,
            cfg.mqtt.host, cfg.mqtt.port, "; took over as the node's active process" if self.took_over else "",
        )
        if self._reload_when_ready:
            self.request_reload()
        await self.stop_event.wait()
        log.info("stopping")
        self.notify.stopping("stopping: storing what the drivers still hold, then disconnecting")
        for task in tasks:
            task.cancel()
        if self._reload_task is not None:
            self._reload_task.cancel()
        await self.control.close()
        await self._shutdown()
        self.lock.release()  # only now: everything is stored and the link is closed; a standby may take over
        return 0

    def _emit(self, record: Record) -> None:
        """Hand a driver's record to the loop (called on driver threads)."""
        try:
            self._loop.call_soon_threadsafe(self.station.submit, record)
        except RuntimeError:  # loop closed during shutdown
            pass

    async def _shutdown(self) -> None:
        self.drivers.stop_all()
        if self.below_link is not None:
            self.below_link.stop()  # no more positions from below: what came is taken in and saved next
        await asyncio.sleep(0)  # run records the drivers handed over while stopping
        self.link.inbox.drain_all()  # messages still queued: handled and acknowledged before the link closes
        self.station.flush()
        if self.cfg.node.tier != "polres":
            self.desk.follow.save_all()  # the next start is ready at once
        self.publisher.pump()
        await asyncio.get_running_loop().run_in_executor(None, self.link.stop)
        self.publisher.commit_acks()  # PUBACKs of the last ACK_COMMIT_S
        self.store.close()
        log.info("stopped; outbox depth at exit: see the database (%s)", self.cfg.store.path)

    async def _every(self, period_s: float, fn: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                fn()
            except Exception:  # a periodic chore must not kill the daemon
                log.exception("periodic task %s failed", getattr(fn, "__name__", fn))

    def device_health(self) -> list[contract.DeviceHealth]:
        now = time.monotonic()
        out = []
        for rd in self.drivers.running:
            last = rd.driver.last_data()
            status = self.station.device_status.get(rd.device)
            out.append(
                contract.DeviceHealth(
                    rd.device, rd.driver_name, status.state.value if status else "starting",
                    rd.driver.counters(), None if last is None else now - last,
                    self.station.implausible_by_device.get(rd.device, 0),
                )
            )
        return out

    def _publish_health(self) -> None:
        self._status()
        if not self.link.connected:
            return
        payload = contract.health_payload(
            utc_now(), time.monotonic() - self.started_mono, self.store.outbox_depth(), self.device_health(),
            outbox_bytes=self.store.unsent_bytes, outbox_thinned=self.budget.thinned_rows,
            implausible_fixes=self.station.implausible_fixes,
        )
        self.link.publish(contract.health_topic(self.cfg.node.topic), payload, 1, False)

    def _clear_retained(self) -> None:
        """Clear the retained topics whose time came (empty retained messages through the outbox, in one transaction)."""
        now = utc_now()
        topics = self.store.due_clears(now)
        if topics:
            self.store.record([], [contract.clear_message(t) for t in topics], now, cleared=topics)
            self.publisher.pump()
            log.info("cleared %d retained messages from the broker (closed calls, taken markers)", len(topics))

    def _prune(self) -> None:
        s = self.cfg.store
        out, pos = self.store.prune(
            utc_now(), timedelta(hours=s.sent_retention_hours), timedelta(days=s.position_retention_days)
        )
        if out or pos:
            log.info("pruned %d acknowledged outbox rows and %d old positions", out, pos)


def _stat(path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of the configuration file, to notice a change made while this process waited as a standby."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)
