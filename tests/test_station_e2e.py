"""A whole station as a real process: pty radios -> alkomd -> private mosquitto -> a consumer."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from conftest import NODE, Daemon, Feeder, Station, Subscriber, iso, wait_until

from alkomd.daemon.ctl.demo.broker import Broker, free_port
from alkomd.drivers.simulator import PtyGps


def _device_states(sub: Subscriber, device: str) -> list[str]:
    return [m.payload["state"] for m in sub.on(f"/device/{device}/status")]


def test_positions_are_stored_and_published_retained_and_sigterm_is_clean(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    station.write_config()
    sub = subscriber_factory(broker.port)
    pty = ptys(station.links[0])
    d = daemons(station.config)
    wait_until(lambda: "waiting" in _device_states(sub, "gps0"), what="device gps0 open")
    feed = Feeder(pty)
    feed.write(5, gap_s=0.2)

    wait_until(lambda: len(sub.on("/unit/R2-00/position")) == 5, what="5 positions")
    positions = [m.payload for m in sub.on("/unit/R2-00/position")]
    assert [p["time"] for p in positions] == [iso(t) for t in feed.times]
    p = positions[-1]
    assert p["unit"] == "R2-00" and p["source"] == "gps0" and p["fix"] == "3d"
    assert abs(p["lat"] - feed.lat) < 1e-6 and abs(p["lon"] - feed.lon) < 1e-6
    assert abs(p["speed_kmh"] - 40.0) < 0.1 and p["course"] == 10.0 and p["sats"] == 9 and p["hdop"] == 0.9
    assert len({q["msg_id"] for q in positions}) == 5
    # Every fix is in SQLite, with the same msg_id as the published message.
    rows = station.query("SELECT time, msg_id FROM positions WHERE unit = 'R2-00' ORDER BY time")
    assert [r[1] for r in rows] == [q["msg_id"] for q in positions]
    wait_until(lambda: station.query("SELECT count(*) FROM outbox WHERE sent IS NULL")[0][0] == 0, what="outbox drained")

    # A consumer arriving later gets the newest position (retained) and the node's state.
    late = subscriber_factory(broker.port, client_id="late-consumer")
    wait_until(lambda: bool(late.on("/unit/R2-00/position")) and bool(late.on("/state")), what="retained messages")
    assert late.on("/unit/R2-00/position")[-1].retain
    assert late.on("/unit/R2-00/position")[-1].payload["time"] == iso(feed.times[-1])
    assert late.on("/state")[-1].payload["state"] == "online"
    wait_until(lambda: bool(sub.on("/health")), what="health")
    health = sub.on("/health")[-1].payload
    assert health["devices"]["gps0"]["sentences"] >= 40 and health["outbox_depth"] >= 0

    started = time.monotonic()
    assert d.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5.0, "SIGTERM must stop the daemon within 5 s"
    wait_until(lambda: sub.on("/state")[-1].payload["state"] == "offline", what="offline state")


def test_sigint_stops_cleanly(
    station: Station, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps]
) -> None:
    station.write_config()
    ptys(station.links[0])
    d = daemons(station.config)
    assert d.stop(signal.SIGINT) == 0
    assert "Traceback" not in d.log


def test_unplug_reports_disconnected_and_replug_resumes(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    station.write_config()
    sub = subscriber_factory(broker.port)
    pty = ptys(station.links[0])
    daemons(station.config)
    wait_until(lambda: "waiting" in _device_states(sub, "gps0"), what="device open")
    feed = Feeder(pty)
    feed.write(3, gap_s=0.1)
    wait_until(lambda: len(sub.on("/unit/R2-00/position")) == 3, what="positions before unplug")

    pty.unplug()
    wait_until(lambda: _device_states(sub, "gps0")[-1] == "disconnected", what="disconnected")
    time.sleep(1.5)  # stays unplugged across several reopen attempts
    assert _device_states(sub, "gps0")[-1] == "disconnected"
    pty.replug()
    wait_until(lambda: _device_states(sub, "gps0")[-1] == "waiting", what="reconnected")
    feed.write(3, gap_s=0.1)
    wait_until(lambda: len(sub.on("/unit/R2-00/position")) == 6, what="positions after replug")
    status = sub.on("/device/gps0/status")[-1].payload
    assert status["counters"]["reconnects"] >= 1
    detail = [m.payload["detail"] for m in sub.on("/device/gps0/status") if m.payload["state"] == "disconnected"]
    assert any("unplugged" in x or "not found" in x or "vanished" in x for x in detail), detail


def test_broker_sigkill_mid_stream_loses_no_message(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """Pass criterion: every msg_id the daemon stored reaches the consumer (messages lost: 0)."""
    station.write_config()
    sub = subscriber_factory(broker.port)
    pty = ptys(station.links[0])
    daemons(station.config)
    wait_until(lambda: bool(_device_states(sub, "gps0")), what="device open")
    feed = Feeder(pty)
    feed.write(60, gap_s=0.02)
    broker.kill()
    feed.write(60, gap_s=0.02)  # stored while the broker is gone
    time.sleep(0.5)
    broker.restart()
    feed.write(60, gap_s=0.02)

    def stored_ids() -> set[str]:
        return {r[0] for r in station.query("SELECT msg_id FROM positions")}

    wait_until(lambda: len(stored_ids()) == 180, what="180 stored fixes")
    wait_until(lambda: station.query("SELECT count(*) FROM outbox WHERE sent IS NULL")[0][0] == 0, 60, "outbox drained")
    wait_until(lambda: stored_ids() <= {m.payload["msg_id"] for m in sub.on("/position")}, 30, "all msg_ids at the consumer")
    received = {m.payload["msg_id"] for m in sub.on("/position")}
    assert len(stored_ids() - received) == 0


def test_daemon_sigkill_with_undelivered_outbox_delivers_after_restart(
    tmp_path: Path, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    port = free_port()
    station = Station(tmp_path / "station", port)  # nothing listens on the port yet
    station.write_config()
    pty = ptys(station.links[0])
    d = daemons(station.config)
    wait_until(lambda: station.db.exists() and bool(station.query("SELECT 1 FROM outbox LIMIT 1")), what="device status stored")
    feed = Feeder(pty)
    feed.write(30, gap_s=0.02)
    wait_until(lambda: station.query("SELECT count(*) FROM positions")[0][0] == 30, what="30 fixes stored")
    undelivered = {r[0] for r in station.query("SELECT msg_id FROM outbox WHERE sent IS NULL AND kind = 'position'")}
    assert len(undelivered) == 30
    d.kill()  # SIGKILL: no chance to flush anything

    with Broker(kind="mosquitto", port=port, workdir=tmp_path / "broker") as broker:
        sub = subscriber_factory(broker.port)
        wait_until(lambda: sub.client.is_connected(), what="consumer connected")
        time.sleep(0.3)  # the consumer's subscription is in place
        daemons(station.config)
        wait_until(lambda: undelivered <= {m.payload["msg_id"] for m in sub.on("/position")}, 30, "backlog delivered")
        got = [m for m in sub.on("/unit/R2-00/position")]
        # The newest position goes first after an outage, retained; the backlog follows unretained.
        assert got[0].payload["time"] == iso(feed.times[-1])
        assert [m.payload["time"] for m in got[1:]] == sorted(m.payload["time"] for m in got[1:])
        late = subscriber_factory(broker.port, client_id="late")
        wait_until(lambda: bool(late.on("/unit/R2-00/position")), what="retained position")
        assert late.on("/unit/R2-00/position")[-1].payload["time"] == iso(feed.times[-1])
    assert NODE in got[0].topic


def test_daemon_starts_on_a_fresh_database_when_its_file_is_corrupt(
    station: Station, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps]
) -> None:
    """D4: the corrupt file is kept aside for a human, the station keeps working."""
    station.write_config()
    ptys(station.links[0])
    station.db.write_bytes(b"SQLite format 3\x00" + b"\x13\x37" * 8192)
    d = daemons(station.config)
    assert "is corrupt" in d.log and "moved to" in d.log
    kept = list(station.dir.glob("alkomd.db.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"SQLite format 3")
    wait_until(lambda: station.query("SELECT count(*) FROM outbox")[0][0] >= 1, what="the fresh database in use")
