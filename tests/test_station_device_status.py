"""Device statuses through the station: all fixes refused says so (status, `alkomctl devices`); the log has changes only."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from test_store_station import T0, make_station

from alkomd.daemon.ctl.status.view import devices_view
from alkomd.daemon.positions.batch import REFUSED_RUN
from alkomd.daemon.positions.station import Station
from alkomd.daemon.queries import Queries
from alkomd.daemon.records import Counters, DeviceState, DeviceStatus, Fix
from alkomd.daemon.store.database import Store


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    loop = asyncio.new_event_loop()
    store = Store(tmp_path / "a.db")
    yield make_station(tmp_path, store, loop)
    store.close()
    loop.close()


def _fix(seconds: int, age: timedelta = timedelta(0)) -> Fix:
    """A fix read at T0 + seconds, stamped `age` before that (a 2024 capture replayed today: over a year)."""
    read = T0 + timedelta(seconds=seconds)
    return Fix(device="gps1", time=read - age, lat=0.55, lon=123.1, mode=3, received=read, received_mono=float(seconds))


def _published(st: Station) -> list[dict[str, Any]]:
    rows = st.store.conn.execute("SELECT payload FROM outbox WHERE topic LIKE '%/device/gps1/status' ORDER BY id").fetchall()
    return [json.loads(p) for (p,) in rows]


def _status(state: DeviceState, detail: str = "") -> DeviceStatus:
    return DeviceStatus("gps1", "nmea", state, T0, Counters(fixes=9), detail)


OLD = timedelta(days=400)


def test_all_fixes_refused_makes_a_connected_device_degraded_with_the_reason_until_one_is_accepted(
    station: Station, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="alkomd.daemon.positions.station")
    st = station
    st.submit(_status(DeviceState.WAITING, "port open, waiting for the first fix"))
    st.flush()
    for i in range(9):  # as the serial driver emits them: the fixes, then the tracker's `connected`
        st.submit(_fix(i, OLD))
        if i == 0:
            st.submit(_status(DeviceState.CONNECTED))
    st.flush()
    states = [(p["state"], p["detail"]) for p in _published(st)]
    assert [s for s, _ in states] == ["waiting", "connected", "degraded"], states
    detail = states[-1][1]
    assert detail.startswith("all fixes refused by the station: fix time more than a day before it was read"), detail
    assert st.device_status["gps1"].state is DeviceState.DEGRADED and st.implausible_by_device["gps1"] == 9
    assert "gps1: connected -> degraded (all fixes refused by the station" in caplog.text

    # alkomctl devices: the state, the reason, and how many were refused.
    rd = SimpleNamespace(driver_name="nmea", driver=SimpleNamespace(last_data=lambda: None, counters=lambda: Counters(fixes=9)))
    daemon = SimpleNamespace(cfg=SimpleNamespace(devices=[SimpleNamespace(id="gps1", driver="nmea", enabled=True)]),
                             drivers=SimpleNamespace(get=lambda _id: rd), station=st)
    (row,) = Queries(daemon).devices()  # type: ignore[arg-type]
    assert (row.state, row.refused_fixes) == ("degraded", 9) and row.detail == detail
    out = io.StringIO()
    Console(file=out, width=400).print(devices_view([row]))
    assert "degraded" in out.getvalue() and "all fixes refused by the station" in out.getvalue()

    # More refused fixes say nothing new; a modem-less driver status while refused keeps `degraded`.
    st.submit(_fix(10, OLD))
    st.submit(_status(DeviceState.CONNECTED))
    st.flush()
    assert len(_published(st)) == 3
    # One accepted fix: the driver's own state again, logged once.
    st.submit(_fix(11))
    st.flush()
    last = _published(st)[-1]
    assert (last["state"], last["detail"]) == ("connected", "") and len(_published(st)) == 4
    assert "gps1: degraded -> connected" in caplog.text


def test_a_few_refused_fixes_among_accepted_ones_change_nothing(station: Station) -> None:
    st = station
    st.submit(_status(DeviceState.CONNECTED))
    for i in range(REFUSED_RUN - 1):
        st.submit(_fix(i, OLD))
    st.submit(_fix(10))
    for i in range(REFUSED_RUN - 1):
        st.submit(_fix(20 + i, OLD))
    st.flush()
    assert [p["state"] for p in _published(st)] == ["connected"]


def test_a_refused_device_that_loses_its_port_shows_the_drivers_state(station: Station) -> None:
    st = station
    st.submit(_status(DeviceState.CONNECTED))
    for i in range(REFUSED_RUN):
        st.submit(_fix(i, OLD))
    st.submit(replace(_status(DeviceState.DISCONNECTED, "port not found")))
    st.flush()
    assert [p["state"] for p in _published(st)] == ["connected", "degraded", "disconnected"]


def test_a_status_that_keeps_the_state_is_published_but_not_logged_as_a_transition(
    station: Station, caplog: pytest.LogCaptureFixture,
) -> None:
    """A modem's health or a new detail re-publishes the state; the log says `connected -> connected` never."""
    caplog.set_level(logging.INFO, logger="alkomd.daemon.positions.station")
    st = station
    st.submit(_status(DeviceState.WAITING, "port open, waiting for the first fix"))
    st.submit(_status(DeviceState.CONNECTED))
    st.submit(_status(DeviceState.CONNECTED, "modem health changed"))
    st.flush()
    assert len(_published(st)) == 3
    arrows = [r.getMessage() for r in caplog.records if " -> " in r.getMessage()]
    assert arrows == ["gps1: starting -> waiting (port open, waiting for the first fix)", "gps1: waiting -> connected"]
