"""Fault matrix, broker rows B1-B5 and B7 (reliability-anchors.md §8; B6 is tests/test_outage.py).

Every test runs the daemon as a process against a real mosquitto on a free loopback port, with
real ptys as GPS ports and a real MQTT 5 consumer, and states its pass criterion in numbers.
Delivery is checked by msg_id: every message the daemon stored must reach the consumer
(at least once; duplicates are counted, and a consumer deduplicates on msg_id).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable, Container, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import Daemon, Feeder, Station, Subscriber, wait_until
from helpers_faults import FeedThread, HalfOpenProxy, Mosquitto, NotifySocket, configure, outbox_ids, received_ids

from alkomd.daemon.ctl.demo.broker import Broker, free_port
from alkomd.daemon.mqtt import publisher as publisher_module
from alkomd.daemon.mqtt.link import Ack, publish_packet_size
from alkomd.daemon.mqtt.publisher import Publisher
from alkomd.daemon.store.database import Message, OutboxRow, Store
from alkomd.drivers.simulator import PtyGps

NODE = "polri110/gorontalo/kota-gorontalo"
KEEPALIVE_S = 5  # what Station.write_config sets


def connects(d: Daemon) -> int:
    return sum(1 for ln in list(d.lines) if "mqtt: connected to" in ln)


def delivered(station: Station, sub: Subscriber) -> bool:
    """Every message the daemon stored has reached the consumer, and none is left to send."""
    if station.query("SELECT count(*) FROM outbox WHERE sent IS NULL")[0][0]:
        return False
    return outbox_ids(station) <= set(received_ids(sub))


def open_devices(sub: Subscriber, n: int) -> Callable[[], bool]:
    return lambda: len({m.topic for m in sub.on("/status") if "/device/" in m.topic}) >= n


# -- B1 / B2: broker SIGKILL during a stream ------------------------------------------------------


def kill_and_restart(
    rounds: int, kill: Callable[[], None], start: Callable[[], None], d: Daemon, sub: Subscriber, rng: random.Random
) -> None:
    for _ in range(rounds):
        time.sleep(rng.uniform(0.3, 1.0))  # streaming
        before = connects(d)
        kill()
        time.sleep(rng.uniform(0.2, 1.0))  # the broker is gone: fixes go to the outbox only
        start()
        wait_until(lambda b=before: connects(d) > b, 15, "the daemon reconnected")  # type: ignore[misc]
        wait_until(sub.client.is_connected, 15, "the consumer reconnected")


def test_b1_broker_sigkill_during_a_stream_20_times_loses_nothing(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """B1. Default (non-persistent) mosquitto SIGKILLed 20 times at random moments while 2 units
    stream 25 fixes/s each; restarted after 0.2-1 s on the same port.

    Pass criterion: messages lost = 0 over the 20 repetitions (every stored msg_id reaches the
    consumer); duplicates allowed (at least once) and printed; outbox empty at the end.
    """
    configure(station, devices=2)
    sub = subscriber_factory(broker.port)
    feeds = [Feeder(ptys(link), lat=0.54 + i / 100) for i, link in enumerate(station.links)]
    d = daemons(station.config)
    wait_until(open_devices(sub, 2), what="both devices open")
    feed = FeedThread(feeds, period_s=0.04).start()
    kill_and_restart(20, broker.kill, broker.start, d, sub, random.Random(110))
    fed = feed.stop()
    wait_until(lambda: delivered(station, sub), 90, "every stored message at the consumer")
    stored = outbox_ids(station)
    got = received_ids(sub)
    lost = stored - set(got)
    dups = sum(n - 1 for m, n in got.items() if m in stored)
    print(f"\nB1: 20 broker SIGKILLs, {fed} fixes fed, {len(stored)} messages stored, lost {len(lost)}, duplicates {dups}")
    assert len(lost) == 0 and len(stored) >= fed
    assert "Traceback" not in d.log


def test_b2_persistent_broker_sigkill_loses_nothing_and_duplicates_carry_one_msg_id(
    tmp_path: Path, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """B2. mosquitto with `persistence true`, `autosave_interval 1`, `autosave_on_changes true`
    SIGKILLed 5 times during a stream (its snapshot replays sessions and messages on restart).

    Pass criterion: messages lost = 0; every duplicate the consumer gets repeats a msg_id it has
    already seen (so deduplication on msg_id yields each message once); counts printed.
    """
    broker = Mosquitto(
        tmp_path / "broker",
        "persistence true\npersistence_location ./\nautosave_interval 1\nautosave_on_changes true\n",
    ).start()
    try:
        station = Station(tmp_path / "station", broker.port)
        configure(station, devices=1)
        sub = subscriber_factory(broker.port)
        feeds = [Feeder(ptys(station.links[0]))]
        d = daemons(station.config)
        wait_until(open_devices(sub, 1), what="device open")
        feed = FeedThread(feeds, period_s=0.03).start()
        kill_and_restart(5, broker.kill, broker.start, d, sub, random.Random(2))
        feed.stop()
        wait_until(lambda: delivered(station, sub), 60, "every stored message at the consumer")
        stored = outbox_ids(station)
        got = received_ids(sub)
        assert (broker.workdir / "mosquitto.db").exists(), "the broker really persisted its state"
    finally:
        broker.kill()
    extra = {m: n - 1 for m, n in got.items() if n > 1}
    print(f"\nB2: 5 SIGKILLs of a persistent broker, {len(stored)} messages, lost {len(stored - set(got))}, "
          f"duplicates {sum(extra.values())} of {len(extra)} messages")
    assert not stored - set(got)
    # A duplicate repeats the msg_id of the first copy (never a new id for the same fix), and one msg_id is one
    # payload: deduplicating on msg_id yields each position exactly once.
    ids_of_fix: dict[tuple[object, object], set[object]] = {}
    payload_of_id: dict[object, set[str]] = {}
    for m in sub.on("/position"):
        ids_of_fix.setdefault((m.payload["unit"], m.payload["time"]), set()).add(m.payload["msg_id"])
        payload_of_id.setdefault(m.payload["msg_id"], set()).add(repr(sorted(m.payload.items())))
    assert ids_of_fix and all(len(ids) == 1 for ids in ids_of_fix.values())
    assert all(len(p) == 1 for p in payload_of_id.values())


# -- B3: the daemon killed while offline ---------------------------------------------------------


def test_b3_daemon_sigkill_three_times_while_offline_then_every_queued_message_is_delivered(
    tmp_path: Path, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """B3. No broker at all; the daemon is SIGKILLed three times, 40 fixes stored each time (120 in
    all, plus device and unit statuses), then the broker comes up and the daemon starts again.

    Pass criterion: queued messages delivered = queued (>= 120; paho alone delivers 0 after a kill).
    """
    port = free_port()
    station = Station(tmp_path / "station", port)  # nothing listens there yet
    configure(station)
    feed = Feeder(ptys(station.links[0]))
    for k in range(3):
        d = daemons(station.config)
        wait_until(lambda d=d: "gps0: starting -> waiting" in d.log, what="device open")  # type: ignore[misc]
        feed.write(40, gap_s=0.01)
        wait_until(lambda k=k: station.query("SELECT count(*) FROM positions")[0][0] == 40 * (k + 1), what="fixes stored")  # type: ignore[misc]
        d.kill()
    queued = outbox_ids(station, "sent IS NULL")
    kinds = dict(station.query("SELECT kind, count(*) FROM outbox WHERE sent IS NULL GROUP BY kind"))
    assert kinds["position"] == 120 and kinds["device_status"] >= 3, kinds
    with Broker(kind="mosquitto", port=port, workdir=tmp_path / "broker") as broker:
        sub = subscriber_factory(broker.port)
        wait_until(sub.client.is_connected, what="consumer connected")
        daemons(station.config)
        wait_until(lambda: queued <= set(received_ids(sub)), 30, "the whole backlog delivered")
    print(f"\nB3: 3 SIGKILLs while offline, {len(queued)} queued, {len(queued & set(received_ids(sub)))} delivered")


# -- B4: half-open path --------------------------------------------------------------------------


def test_b4_half_open_path_is_noticed_within_two_keepalives_and_nothing_is_lost(
    tmp_path: Path, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """B4. The daemon reaches the broker through a TCP proxy that stops forwarding without closing
    anything (a dead router or NAT entry), while a unit streams; the path heals 4 s later.

    Pass criteria: the daemon notices within 2 x keepalive + 3 s (paho sends PINGREQ one
    keepalive after the last bytes received and gives up one keepalive later: with PUBACKs
    flowing, detection takes ~2 x keepalive, not 1.5 x); it reconnects within 15 s of the
    heal; messages lost = 0 (those written into the dead path are sent again from the outbox).
    """
    proxy = HalfOpenProxy(broker.port)
    try:
        station = Station(tmp_path / "station", proxy.port)
        configure(station)
        sub = subscriber_factory(broker.port)  # the consumer's own path stays good
        feeds = [Feeder(ptys(station.links[0]))]
        d = daemons(station.config)
        wait_until(open_devices(sub, 1), what="device open")
        feed = FeedThread(feeds, period_s=0.1).start()
        wait_until(lambda: len(sub.on("/position")) >= 10, what="a stream")
        before = connects(d)
        stalled_at = time.monotonic()
        proxy.stall()
        wait_until(lambda: "mqtt: disconnected" in d.log, 2 * KEEPALIVE_S + 3, "the dead path noticed")
        noticed = time.monotonic() - stalled_at
        time.sleep(max(0.0, 4.0 - noticed))
        healed_at = time.monotonic()
        proxy.heal()
        wait_until(lambda: connects(d) > before, 15, "reconnected after the heal")
        back = time.monotonic() - healed_at
        fed = feed.stop()
        wait_until(lambda: delivered(station, sub), 30, "every stored message at the consumer")
    finally:
        proxy.close()
    lost = outbox_ids(station) - set(received_ids(sub))
    print(f"\nB4: keepalive {KEEPALIVE_S} s: dead path noticed after {noticed:.1f} s, reconnected {back:.1f} s after "
          f"the heal; {fed} fixes, lost {len(lost)}")
    assert not lost
    assert re.search(r"mqtt: disconnected from \S+ \(Keep alive timeout\)", d.log), "noticed by the keepalive"


# -- B5: broker down at start --------------------------------------------------------------------


def test_b5_broker_down_at_start_the_daemon_is_ready_records_and_delivers_later(
    tmp_path: Path, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """B5. Nothing listens on the broker port when the daemon starts (systemd's NOTIFY_SOCKET set).

    Pass criteria: READY=1 once, with a STATUS line saying the broker is unreachable, within 20 s
    (TimeoutStartSec is 60 s); 30 fixes stored while offline; when the broker comes up STATUS
    says connected and the 30 positions (and the statuses) reach the consumer: lost 0.
    """
    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", notify.address)
    try:
        port = free_port()
        station = Station(tmp_path / "station", port)
        configure(station)
        feed = Feeder(ptys(station.links[0]))
        started = time.monotonic()
        d = daemons(station.config)
        wait_until(lambda: bool(notify.fields("READY")), 20, "READY=1")
        ready_s = notify.messages[0][0] - started if notify.messages else float("nan")
        wait_until(lambda: any("broker unreachable" in s for s in notify.fields("STATUS")), 10, "STATUS: unreachable")
        wait_until(lambda: "gps0: starting -> waiting" in d.log, what="device open")
        feed.write(30, gap_s=0.02)
        wait_until(lambda: station.query("SELECT count(*) FROM outbox WHERE kind = 'position' AND sent IS NULL")[0][0] == 30,
                   what="30 positions waiting")
        queued = outbox_ids(station, "sent IS NULL")
        with Broker(kind="mosquitto", port=port, workdir=tmp_path / "broker") as broker:
            sub = subscriber_factory(broker.port)
            wait_until(lambda: any("broker connected" in s for s in notify.fields("STATUS")), 20, "STATUS: connected")
            wait_until(lambda: queued <= set(received_ids(sub)), 30, "the backlog delivered")
    finally:
        notify.close()
    assert notify.fields("READY") == ["1"]
    print(f"\nB5: READY=1 {ready_s:.2f} s after start without a broker; {len(queued)} queued, all delivered")


# -- B7: PUBACK reason codes and packet limits ---------------------------------------------------


def acl_broker(workdir: Path, conf: str = "") -> Mosquitto:
    """A broker whose ACL lets the station write positions, unit statuses, state and health, but not device statuses."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "acl").write_text(
        f"topic readwrite {NODE}/unit/#\ntopic readwrite {NODE}/state\ntopic readwrite {NODE}/health\n"
        f"topic readwrite {NODE}/call/#\ntopic read {NODE}/#\n"
    )
    return Mosquitto(workdir, f"acl_file {workdir / 'acl'}\n{conf}").start()


def test_b7_refused_publish_0x87_is_kept_logged_once_and_not_retried_in_a_loop(
    tmp_path: Path, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """B7 (0x87). The broker's ACL denies `<node>/device/#`: device statuses get PUBACK 0x87.

    Pass criteria over 8 s: each denied message reaches the broker exactly once (denied PUBLISHes =
    device-status rows: retries at most once a minute), the refusal is logged once, the rows stay
    unsent in the outbox, positions keep flowing to the consumer (20 of 20).
    """
    broker = acl_broker(tmp_path / "broker")
    try:
        station = Station(tmp_path / "station", broker.port)
        configure(station)
        sub = subscriber_factory(broker.port)
        feed = Feeder(ptys(station.links[0]))
        d = daemons(station.config)
        wait_until(lambda: "refused a device_status message (reason 0x87" in d.log, 20, "the refusal logged")
        feed.write(20, gap_s=0.05)
        wait_until(lambda: len(sub.on("/unit/R2-00/position")) == 20, what="positions delivered meanwhile")
        time.sleep(8)
        denied = [ln for ln in broker.log().splitlines() if "Denied PUBLISH" in ln and "/device/gps0/status" in ln]
        kept = station.query("SELECT count(*) FROM outbox WHERE kind = 'device_status' AND sent IS NULL")[0][0]
    finally:
        broker.kill()
    assert kept >= 1 and len(denied) == kept, denied
    assert d.log.count("broker refused a device_status message") == 1
    assert not sub.on("/device/gps0/status")


def test_b7_no_subscriber_0x10_after_a_connect_is_retried_until_a_consumer_is_there(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """B7 (0x10). Nobody subscribes for the first 3 s after the daemon connects; 15 fixes in that time.

    Pass criterion: a consumer that subscribes afterwards with a fresh session receives all 15
    position msg_ids (the 14 superseded ones are not retained: without the retry they were lost).
    """
    configure(station)
    feed = Feeder(ptys(station.links[0]))
    d = daemons(station.config)
    wait_until(lambda: connects(d) == 1, what="connected")
    wait_until(lambda: "gps0: starting -> waiting" in d.log, what="device open")
    feed.write(15, gap_s=0.1)
    wait_until(lambda: station.query("SELECT count(*) FROM outbox WHERE kind = 'position'")[0][0] == 15, what="15 stored")
    time.sleep(1.5)
    sub = subscriber_factory(broker.port, client_id="late-consumer")
    positions = outbox_ids(station, "kind = 'position'")
    wait_until(lambda: positions <= set(received_ids(sub)), 15, "every position delivered")
    # The consumer can see a message before the daemon has processed its PUBACK: wait for the marks.
    wait_until(lambda: station.query("SELECT count(*) FROM outbox WHERE sent IS NULL")[0][0] == 0, 10, "outbox drained")


def test_b7_a_message_over_the_brokers_maximum_packet_size_is_kept_and_the_link_stays_up(
    tmp_path: Path, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """B7 (oversize). The broker announces `max_packet_size 300`: a position (~330 bytes as a packet)
    is too large, a unit status (~200) is not. mosquitto disconnects a client that sends more.

    Pass criteria: the daemon never sends one (0 "oversize packet" disconnects, 1 connect in 6 s),
    logs it once, keeps the positions unsent, still delivers the unit status; with a broker that
    accepts 1 MB on the same port the positions go (20 of 20).
    """
    port = free_port()
    small = Mosquitto(tmp_path / "small", "max_packet_size 300\n", port=port).start()
    try:
        station = Station(tmp_path / "station", port)
        configure(station)
        sub = subscriber_factory(port)
        feed = Feeder(ptys(station.links[0]))
        d = daemons(station.config)
        wait_until(lambda: connects(d) == 1, what="connected")
        wait_until(lambda: "gps0: starting -> waiting" in d.log, what="device open")
        feed.write(20, gap_s=0.05)
        wait_until(lambda: bool(sub.on("/unit/R2-00/status")), what="the unit status (small) delivered")
        time.sleep(6)
        assert connects(d) == 1, "the link must not flap"
        assert "oversize" not in small.log()
        assert len(re.findall(r"a position message of \d+ bytes exceeds the broker.s maximum packet size", d.log)) == 1
        assert station.query("SELECT count(*) FROM outbox WHERE kind = 'position' AND sent IS NULL")[0][0] == 20
        assert not sub.on("/position")
    finally:
        small.kill()
    big = Mosquitto(tmp_path / "big", "max_packet_size 1000000\n", port=port).start()
    try:
        positions = outbox_ids(station, "kind = 'position'")
        # Rows held back for their size are looked at again at the next connect (not only after a minute).
        wait_until(lambda: connects(d) == 2, 15, "reconnected")
        wait_until(lambda: positions <= set(received_ids(sub)), 15, "the positions delivered")
    finally:
        big.kill()


# -- B7 at the publisher: every refusal code takes the same path -----------------------------------


class Clock:
    """The publisher's clock, moved on by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def publisher(tmp_path: Path, clock: Clock) -> Iterator[tuple[Publisher, Store, list[tuple[str, int]], asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    store = Store(tmp_path / "a.db")
    pub = Publisher(store, loop, window=5, clock=clock)
    sent: list[tuple[str, int]] = []  # (msg topic, mid)

    def send(topic: str, payload: str, qos: int, retain: bool) -> int:
        sent.append((topic, len(sent) + 1))
        return len(sent)

    pub.send = send
    yield pub, store, sent, loop
    store.close()
    loop.close()


def test_a_puback_reads_only_the_rows_that_came_since_however_many_are_held(
    publisher: tuple[Publisher, Store, list[tuple[str, int]], asyncio.AbstractEventLoop], monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
) -> None:
    """Rows held for 0x10 wait behind the publisher's cursor: a PUBACK asks the store only for newer rows (under a flood
    of PUBACKs, reading every held row each time cost the loop up to 1.8 ms an ack); held rows come back by id when due."""
    pub, store, sent, _ = publisher
    store.record([], [Message(f"h{i}", "alert", f"{NODE}/unit/R{i}/alert", "{}", 1, False) for i in range(40)], datetime.now(UTC))
    pub.on_connected()
    mid = 0
    while mid < len(sent):  # every alert refused with 0x10 as it goes out: all 40 end up held
        mid += 1
        pub.on_ack(Ack(mid, 0x10, "No matching subscribers"))
    assert len(sent) == 40 and pub.held()[0] == 40
    asked: list[int] = []  # `after` of each read of new rows
    real = store.unsent

    def spy(limit: int, skip: Container[int] = frozenset(), after: int = 0) -> list[OutboxRow]:
        asked.append(after)
        return real(limit, skip, after)

    monkeypatch.setattr(store, "unsent", spy)
    store.record([], [Message("new", "alert", f"{NODE}/unit/R99/alert", "{}", 1, False)], datetime.now(UTC))
    pub.pump()
    assert sent[-1][0].endswith("/R99/alert") and asked and all(after >= 40 for after in asked)
    pub.on_ack(Ack(len(sent), 0, "Success"))
    pub.pump()
    assert len(sent) == 41  # held: not due yet
    clock.now += publisher_module.NO_SUBSCRIBER_RETRY_S  # the held rows' retry is due
    pub.pump()
    assert [t for t, _ in sent[41:]] == [f"{NODE}/unit/R{i}/alert" for i in range(5)]  # the oldest five: the window


def test_b7_a_superseded_audit_head_is_not_held_for_0x10_but_every_position_and_alert_is(
    publisher: tuple[Publisher, Store, list[tuple[str, int]], asyncio.AbstractEventLoop], clock: Clock,
) -> None:
    """Mabes has no parent to read its audit head: each audit record's head gets 0x10 in the first minute after a
    connect. Only the newest head counts (a consumer that subscribes later is given the retained one), so a superseded
    head is taken as delivered instead of held and sent again every 2 s (500 calls held 1,800 rows and made every
    PUBACK slow). Positions (history) and alerts (not retained) superseded on their topic are still held, as B7 asks."""
    pub, store, sent, loop = publisher
    heads = [Message(f"a{i}", "audit_head", f"{NODE}/audit/head", f'{{"count":{i}}}', 1, True) for i in range(30)]
    positions = [Message(f"p{i}", "position", f"{NODE}/unit/R2-00/position", f'{{"n":{i}}}', 1, True) for i in range(5)]
    alerts = [Message(f"l{i}", "alert", f"{NODE}/unit/R2-00/alert", "{}", 1, False) for i in range(3)]
    store.record([], heads + positions + alerts, datetime.now(UTC))
    pub.on_connected()
    mid = 0
    while mid < len(sent):  # the broker answers every one with 0x10 as it goes out
        mid += 1
        pub.on_ack(Ack(mid, 0x10, "No matching subscribers"))
    loop.run_until_complete(asyncio.sleep(publisher_module.ACK_COMMIT_S * 2))
    assert pub.held()[0] == 1 + 5 + 3  # the newest head, every position, every alert
    unsent = store.conn.execute("SELECT msg_id FROM outbox WHERE sent IS NULL ORDER BY id").fetchall()
    assert [m for (m,) in unsent] == ["a29"] + [m.msg_id for m in positions + alerts]
    clock.now += publisher_module.NO_SUBSCRIBER_RETRY_S  # their retry is due: the held ones go again, no other
    before = len(sent)
    pub.pump()
    while mid < len(sent):  # each PUBACK makes room in the window for the next held row
        mid += 1
        pub.on_ack(Ack(mid, 0, "Success"))
    assert sorted(t for t, _ in sent[before:]) == sorted([f"{NODE}/audit/head"] + [m.topic for m in positions + alerts])


@pytest.mark.parametrize("reason", [0x80, 0x83, 0x87, 0x90, 0x97, 0x99])
def test_b7_any_refusal_code_keeps_the_row_and_blocks_it_for_a_minute(
    publisher: tuple[Publisher, Store, list[tuple[str, int]], asyncio.AbstractEventLoop], reason: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """B7 (0x97 quota exceeded and every other refusal: mosquitto 2.0 sends 0x97 only for a full
    QoS 2 receive queue, so this runs the publisher with a real store and loop instead of a broker).

    Pass criteria: the refused row is not sent again within REFUSED_RETRY_S (0 resends over 10
    pumps), stays unsent, is logged once for two refusals of its kind; other rows keep going.
    """
    pub, store, sent, _ = publisher
    store.record([], [Message(f"m{i}", "alert", f"{NODE}/unit/R2-0{i}/alert", "{}", 1, False) for i in range(3)], datetime.now(UTC))
    caplog.set_level(logging.ERROR, logger="alkomd.daemon.mqtt.publisher")
    pub.on_connected()
    assert [t for t, _ in sent] == [f"{NODE}/unit/R2-0{i}/alert" for i in range(3)]
    pub.on_ack(Ack(1, reason, "refused"))
    pub.on_ack(Ack(2, reason, "refused"))
    for _ in range(10):
        pub.pump()
    assert len(sent) == 3, "a refused row must not be sent again within a minute"
    assert store.outbox_depth() == 3 and pub.refused == 2
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1


def test_b7_oversize_is_measured_as_the_broker_measures_it() -> None:
    """The packet size the publisher compares with Maximum Packet Size: fixed header + topic + id + properties."""
    assert publish_packet_size("a/b", "x" * 10) == 2 + (2 + 3 + 2 + 1 + 10)
    assert publish_packet_size("a/b", "x" * 200) == 3 + (2 + 3 + 2 + 1 + 200)  # remaining length > 127: 2 bytes
    assert publish_packet_size("t", "é") == 2 + (2 + 1 + 2 + 1 + 2)  # UTF-8 bytes, not characters


# -- the page that maps the matrix to tests --------------------------------------------------------

MATRIX_ROWS = [f"S{i}" for i in range(1, 10)] + [f"M{i}" for i in range(1, 4)] + [f"B{i}" for i in range(1, 8)] + \
    [f"Q{i}" for i in range(1, 7)] + [f"I{i}" for i in range(1, 8)] + [f"E{i}" for i in range(1, 9)] + \
    [f"D{i}" for i in range(1, 6)] + [f"Y{i}" for i in range(1, 5)] + ["R1", "C1", "C2", "C3", "C4"]


def test_the_fault_matrix_page_names_every_row_and_only_tests_that_exist() -> None:
    """docs/fault-matrix.md: a table row for each of the 53 matrix rows, each with a test or a reason,
    and every `tests/<file>.py::<test>` it names is a test function in that file."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "fault-matrix.md").read_text()
    rows = dict(re.findall(r"^\| ([SMBQIEDYRC][0-9]) \| [^|]+ \| (.+) \|$", page, re.MULTILINE))
    assert sorted(rows) == sorted(MATRIX_ROWS)
    for row, cover in rows.items():
        assert "::test_" in cover or cover.startswith("not automated: "), row
    named = set(re.findall(r"`(tests/[a-z0-9_]+\.py)::(test_[a-z0-9_]+)`", page))
    assert len(named) > 50
    missing = [f"{f}::{t}" for f, t in sorted(named)
               if not re.search(rf"^(async )?def {t}\(", (root / f).read_text(), re.MULTILINE)]
    assert not missing, missing


def test_b7_no_subscriber_0x10_holds_are_logged_once_bounded_and_said_in_status(
    publisher: tuple[Publisher, Store, list[tuple[str, int]], asyncio.AbstractEventLoop], caplog: pytest.LogCaptureFixture,
    clock: Clock,
) -> None:
    """0x10 after a connect: rows held (not delivered), one log line however many 0x10 come, `held()` says
    why and for how long (alkomctl status shows it); after the grace window the row counts as delivered."""
    from alkomd.daemon.control import OutboxInfo, Status, decode, encode

    pub, store, sent, loop = publisher
    store.record([], [Message(f"m{i}", "alert", f"{NODE}/unit/R2-0{i}/alert", "{}", 1, False) for i in range(2)], datetime.now(UTC))
    caplog.set_level(logging.INFO, logger="alkomd.daemon.mqtt.publisher")
    pub.on_connected()
    pub.on_ack(Ack(1, 0x10, "No matching subscribers"))
    pub.on_ack(Ack(2, 0x10, "No matching subscribers"))
    held, refused, why = pub.held()
    assert (held, refused) == (2, 0) and "no subscriber" in why and "0x10" in why and "taken as delivered" in why
    assert len([r for r in caplog.records if "no subscriber" in r.getMessage()]) == 1
    assert store.outbox_depth() == 2
    # The grace window ends: the next 0x10 is delivery.
    clock.now += publisher_module.NO_SUBSCRIBER_GRACE_S  # their retry is due, and the grace window is over
    pub.pump()
    assert len(sent) == 4
    pub.on_ack(Ack(3, 0x10, "No matching subscribers"))
    pub.on_ack(Ack(4, 0x10, "No matching subscribers"))
    loop.run_until_complete(asyncio.sleep(publisher_module.ACK_COMMIT_S * 2))  # acknowledgements are committed on the loop
    assert store.outbox_depth() == 0 and pub.held() == (0, 0, "")
    assert len([r for r in caplog.records if "no subscriber" in r.getMessage()]) == 1
    # The reply's new fields are additive: an older daemon's reply still decodes.
    info = decode(OutboxInfo, {"depth": 3, "oldest_unsent_age_s": 1.5}, "outbox")
    assert info == OutboxInfo(3, 1.5) and info.held_reason == ""
    assert encode(OutboxInfo(3, 1.5, 2, 0, why))["held_reason"] == why
    # alkomctl status says it on the outbox line.
    import io

    from rich.console import Console

    from alkomd.daemon.control import BrokerLink, DatabaseInfo
    from alkomd.daemon.ctl.status.view import status_view

    st = Status("0", NODE, "", "polres", 1, "c.toml", "t", 1.0, True, BrokerLink("h", 1, True, "t", ""),
                OutboxInfo(3, 1.5, 2, 0, why), DatabaseInfo("db", 0, 0, 1), {}, {}, None)
    out = io.StringIO()
    Console(file=out, width=300).print(status_view(st))
    assert f"3 unsent, oldest 1s ({why})" in out.getvalue()
