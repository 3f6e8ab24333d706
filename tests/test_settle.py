"""After a (re)connect, calls wait for the retained `taken` markers: until the daemon's probe to itself comes back, not a fixed time."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import Daemon, Received, Station, Subscriber, loop_until, wait_until

from alkomd.daemon.calls.settle import Settle
from alkomd.daemon.calls.supervision import CHILD_OFFLINE
from alkomd.daemon.calls.types import CallRequest, Location
from alkomd.daemon.config import MqttConfig
from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.link import LinkEvents, MqttLink
from alkomd.daemon.records import utc_now

ROOT = Path(__file__).resolve().parents[1]
JUR = ROOT / "config" / "jurisdictions"
POLRES, POLDA = "polri110/gorontalo/kota-gorontalo", "polri110/gorontalo"
PROBE = f"{POLRES}/probe/link"


def test_settle_rules_nonce_per_connect_reconnect_while_held_and_the_fallback(caplog: pytest.LogCaptureFixture) -> None:
    """Calls are held from the connect until THIS connect's probe is back, in their order; a probe of an earlier
    connect (paho resends an unacknowledged one after a reconnect) releases nothing; a reconnect while calls are held
    keeps them held under a new nonce; with no probe back, the fallback releases them with a warning naming the cause."""
    loop = asyncio.new_event_loop()
    released: list[list[tuple[bool, bytes]]] = []  # (is AML, payload) of each call held
    try:
        s = Settle(loop, released.append, PROBE, max_s=60.0)
        assert not s.hold((False, b"before any connect")), "nothing to wait for before the first connect"
        s.link_up()
        assert s.probe_sent is False and s.hold((False, b"A")) and s.hold((True, b"B"))
        first = s.probe()
        assert first is not None
        s.link_up()  # the link dropped and came back before the probe returned
        assert s.nonce != first and s.holding
        s.came_back(first)  # the earlier connect's probe, resent by paho on the new connection
        assert released == [] and s.holding, "a probe of an earlier connect released the calls"
        s.came_back("")  # not a probe of this daemon at all
        assert released == []
        assert s.hold((False, b"C"))
        second = s.probe()
        assert second is not None and second != first
        s.came_back(second)
        assert released == [[(False, b"A"), (True, b"B"), (False, b"C")]] and not s.holding
        assert not s.hold((False, b"D")), "after the release, calls go on at once"
        assert s.probe() is None
        s.came_back(second)  # a duplicate of it (QoS 1 is at least once)
        assert len(released) == 1

        released.clear()
        s.max_s = 0.05
        with caplog.at_level(logging.WARNING, logger="alkomd.daemon.calls.settle"):
            s.link_up()
            s.hold((False, b"E"))
            loop_until(loop, lambda: bool(released))
            assert released == [[(False, b"E")]]
            assert "did not acknowledge every subscription (SUBACK)" in caplog.text
            caplog.clear()
            s.link_up()
            s.hold((False, b"F"))
            lost = s.probe()  # sent, and lost (an ACL that forbids it, a full broker queue)
            loop_until(loop, lambda: len(released) == 2)
            assert released[1] == [(False, b"F")]
            assert f"the probe on {PROBE} did not come back" in caplog.text and "ACL" in caplog.text
            assert lost is not None
            s.came_back(lost)  # late: the calls went on already
            assert len(released) == 2
    finally:
        loop.close()


def test_with_a_second_connection_for_the_units_below_calls_wait_for_both_probes(caplog: pytest.LogCaptureFixture) -> None:
    """`[mqtt] below_connection = "separate"`: the daemon's probe alone releases nothing; the second connection's, with
    this connect's nonce, does (in either order); one with an older nonce is ignored; the fallback names the one missing."""
    loop = asyncio.new_event_loop()
    released: list[list[str]] = []
    try:
        s = Settle(loop, released.append, PROBE, max_s=60.0, below=True)
        s.link_up()
        s.hold("A")
        nonce = s.probe()
        assert nonce is not None
        s.came_back(nonce)
        assert released == [] and s.holding, "the units below's retained messages may not be in yet"
        s.below_came_back("an older nonce")
        assert released == []
        s.below_came_back(nonce)
        assert released == [["A"]] and not s.holding
        s.link_up()  # the other order
        s.hold("B")
        nonce = s.probe()
        assert nonce is not None
        s.below_came_back(nonce)
        assert released == [["A"]]
        s.came_back(nonce)
        assert released == [["A"], ["B"]]
        s.max_s = 0.05
        with caplog.at_level(logging.WARNING, logger="alkomd.daemon.calls.settle"):
            s.link_up()
            s.hold("C")
            nonce = s.probe()
            assert nonce is not None
            s.came_back(nonce)
            loop_until(loop, lambda: len(released) == 3)
        assert released[2] == ["C"] and "the second connection's probe on <node>/probe/below did not come back" in caplog.text
    finally:
        loop.close()


class _Recorder(LinkEvents):
    """What an MqttLink reports, in order; on `subscribed` it sends the probe (as the runtime does)."""

    def __init__(self) -> None:
        self.link: MqttLink | None = None
        self.events: list[str] = []
        self.topics: list[str] = []

    def connected(self) -> None:
        self.events.append("connected")

    def subscribed(self) -> None:
        self.events.append("subscribed")
        assert self.link is not None
        self.link.publish(PROBE, contract.link_probe_payload("n-1", utc_now(), "test"))

    def message(self, topic: str, payload: bytes, retain: bool) -> None:
        self.topics.append(topic)


def test_the_probe_comes_back_behind_every_retained_marker(broker: Broker, subscriber_factory: Callable[..., Subscriber]) -> None:
    """What the hold rests on, against the real mosquitto: 300 retained taken markers are on the broker before the
    node connects; the link reports `subscribed` after `connected`, once every SUBACK is in; the probe published then
    comes back after all 300 markers."""
    feeder = subscriber_factory(broker.port, topic="feeder/none", client_id="feeder")
    markers = [contract.call_taken_topic(POLRES, f"T-{i:03d}") for i in range(300)]
    for topic in markers:
        body = {"call_id": topic.split("/")[-2], "by": POLDA, "reason": CHILD_OFFLINE, "time": "2026-11-22T02:15:07.250Z"}
        feeder.client.publish(topic, json.dumps(body), qos=1, retain=True)
    probe = subscriber_factory(broker.port, topic=f"{POLRES}/call/+/taken", client_id="count-markers")
    wait_until(lambda: len(probe.on("/taken")) == len(markers), 20, "the markers retained on the broker")

    loop = asyncio.new_event_loop()
    rec = _Recorder()
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, tls=False, keepalive_s=5, reconnect_min_s=0.5, reconnect_max_s=2)
    link = MqttLink(cfg, POLRES, "test", loop, rec, contract.subscriptions(POLRES, "polres"))
    rec.link = link
    try:
        link.start()
        loop_until(loop, lambda: PROBE in rec.topics, 20)
        assert rec.events == ["connected", "subscribed"]
        got = rec.topics[: rec.topics.index(PROBE)]
        assert sorted(t for t in got if t.endswith("/taken")) == sorted(markers), "a retained marker came after the probe"
    finally:
        link.stop()
        loop.close()


def _polres(tmp_path: Path, port: int) -> Path:
    st = Station(tmp_path / "polres", port)
    st.write_config(devices=0)
    st.config.write_text(
        st.config.read_text()
        + f'\n[jurisdictions]\nfile = "{JUR}/gorontalo-adm2.geojson"\ninclude_property = "code"\ninclude_values = ["75.71"]\n'
        "\n[dispatch]\nanswer_timeout_polres_s = 120\n"
    )
    return st.config


def _call(call_id: str) -> CallRequest:
    return CallRequest(call_id, "+6285200000000", Location(0.5450, 123.0620, 10.0), datetime.now(UTC), "pelaporan/kecelakaan", "mqtt")


def test_e6_a_marker_retained_before_the_connect_is_honoured_and_calls_queued_meanwhile_go_on_once_the_probe_is_back(
    tmp_path: Path, broker: Broker, daemons: Callable[[Path], Daemon], subscriber_factory: Callable[..., Subscriber],
) -> None:
    """The Polres is away (SIGKILL; its persistent session stays on the broker). Meanwhile 30 calls are sent to it and
    its Polda takes 15 of them (their retained `taken` markers, as the Polda publishes them). The Polres comes back:
    the broker delivers the 30 queued calls first, then the retained markers. Pass: all 30 calls are held until the
    probe is back (the log says 30 held), the 15 taken ones are recognised and never offered, the 15 others are
    handled (a call state each), and no fallback warning."""
    sub = subscriber_factory(broker.port, topic="polri110/#")
    cfg = _polres(tmp_path, broker.port)
    polres = daemons(cfg)
    wait_until(lambda: "the probe came back" in polres.log, 15, "the first connect's probe back (the session exists)")
    polres.kill()
    wait_until(lambda: any(m.payload.get("state") == "offline" for m in sub.on(f"{POLRES}/state")), 15, "the Polres's will")

    calls = [_call(f"Q-{i:02d}") for i in range(30)]
    taken = {c.call_id for c in calls[::2]}
    for c in calls:
        body = contract.call_new_payload(c, contract.new_msg_id())
        sub.client.publish(contract.call_new_topic(POLRES), contract.dumps(body), qos=1).wait_for_publish(10)
        if c.call_id in taken:
            _, marker = contract.takeover_messages(POLDA, POLRES, c, CHILD_OFFLINE, utc_now())
            sub.client.publish(marker.topic, marker.payload, qos=1, retain=True).wait_for_publish(10)

    polres = daemons(cfg)
    others = [c.call_id for c in calls if c.call_id not in taken]

    def states(call_id: str) -> list[Received]:
        return [m for m in sub.on(f"{POLRES}/call/{call_id}") if m.payload]

    wait_until(lambda: all(states(cid) for cid in others), 30, "a call state for every call not taken")
    for cid in taken:
        wait_until(lambda c=cid: f"call {c}: already taken by {POLDA}" in polres.log, 10, f"{cid} recognised as taken")  # type: ignore[misc]
    held = [int(n) for n in re.findall(r"the probe came back .* (\d+) held calls go on", polres.log)]
    assert held == [30], f"not every queued call waited for the probe: {held}"
    assert all(not states(cid) for cid in taken), "the Polres offered a call its parent had taken"
    assert "no proof" not in polres.log
    rows = Station(tmp_path / "polres", broker.port).query("SELECT call_id FROM audit WHERE kind = 'call.taken_by_parent'")
    assert sorted(r[0] for r in rows) == sorted(taken)
