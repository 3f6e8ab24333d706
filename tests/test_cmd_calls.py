"""Seeing calls from the station (issue 13 item 6): `alkomctl calls`, open calls and emergencies in `alkomctl status`,
and `call show` as a timeline people read."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from conftest import Daemon, Station, Subscriber, wait_until
from test_calls_e2e import NODE, _call, _configure, _online

from alkomd.daemon import control
from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.queries import Queries
from alkomd.daemon.store.audit import AuditEntry
from alkomd.daemon.store.database import Store, StoredCall
from alkomd.drivers.simulator import PtyGps


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", *args], capture_output=True, text=True, timeout=60)


def body(call_id: str, state: str, received: datetime, category: str = "pencurian", unit: str | None = None,
         flags: tuple[str, ...] = (), caller: str = "+6281234567890", location: str = "ok") -> str:
    """A stored call as the calls table holds it (calls/codec.py's format: the fields the list reads)."""
    return json.dumps({
        "format": 2, "call_id": call_id, "state": state, "assigned_unit": unit, "flags": list(flags),
        "request": {"call_id": call_id, "caller": caller, "category": category, "received_at": received.isoformat()},
        "placement": {"status": location, "jurisdiction": "75.71" if location != "invalid" else None},
        "created": received.isoformat(), "updated": received.isoformat(),
    })


def seeded(tmp_path: Path) -> Path:
    """A database with a closed call, an open one without a location and an open radio emergency."""
    now = datetime.now(UTC)
    db = tmp_path / "alkomd.db"
    s = Store(db)
    calls = [
        StoredCall("C-1", "closed", False, body("C-1", "closed", now - timedelta(hours=2), unit="R2-00")),
        StoredCall("C-2", "offered", True, body("C-2", "offered", now - timedelta(minutes=5), location="invalid",
                                                flags=("invalid_location", "no_candidate"))),
        StoredCall("E-1", "assigned", True, body("E-1", "assigned", now - timedelta(minutes=1), category="darurat/tombol",
                                                 unit="R2-02", flags=("emergency",), caller="R2-01")),
    ]
    audits = [AuditEntry(now - timedelta(minutes=5), "call.new", "C-2", "", '{"detail":"call C-2 from mqtt","by":""}'),
              AuditEntry(now - timedelta(minutes=4), "call.answered", "C-2", "", '{"detail":"answered","by":"piket-polres"}'),
              AuditEntry(now - timedelta(minutes=4), "call.duplicate", "C-2", "", '{"sha256":"00aa"}')]
    s.record([], [], now, audits, calls=calls)
    s.close()
    return db


def test_calls_lists_every_call_and_the_open_ones_emergencies_first(tmp_path: Path) -> None:
    """Pass: --json has the 3 calls newest first with state, priority, category, location, unit, age and flags;
    --open has the 2 open ones, the emergency first; the table names them; a missing database is exit 66."""
    db = seeded(tmp_path)
    r = ctl("calls", "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [c["call_id"] for c in rows] == ["E-1", "C-2", "C-1"]
    e, c2, c1 = rows
    assert e["priority"] == 0 and e["category"] == "darurat/tombol" and e["unit"] == "R2-02" and e["flags"] == ["emergency"]
    assert c2["location"] == "invalid" and c2["unit"] is None and 280 < c2["age_s"] < 900 and c2["open"] is True
    assert c1["state"] == "closed" and c1["priority"] == 3 and c1["category"] == "pelaporan/pencurian" and c1["open"] is False
    r = ctl("calls", "--open", "--db", str(db), "--json")
    assert [c["call_id"] for c in json.loads(r.stdout)] == ["E-1", "C-2"]
    r = ctl("calls", "--open", "--db", str(db))
    assert r.returncode == 0 and "2 calls" in r.stdout and "emergency" in r.stdout and "no_candidate" in r.stdout
    assert ctl("calls", "--db", str(tmp_path / "none.db")).returncode == 66
    s = Store(db)
    s.record([], [], datetime.now(UTC), calls=[StoredCall("X-9", "new", True, "not json")])
    s.close()
    r = ctl("calls", "--open", "--db", str(db), "--json")
    assert r.returncode == 0 and [c["call_id"] for c in json.loads(r.stdout)][-1] == "X-9"  # listed, flagged unreadable


def test_call_show_is_a_timeline_with_who_and_dash_for_nobody(tmp_path: Path) -> None:
    """Pass: a header with the call's state, category, location and flags; one line per entry with its time, kind,
    who (`-` when `by` is empty) and detail text (no raw JSON); --json keeps the stored entries and adds `who`."""
    db = seeded(tmp_path)
    r = ctl("call", "show", "C-2", "--db", str(db))
    assert r.returncode == 0, r.stderr
    head, columns, *lines = r.stdout.splitlines()
    assert head.startswith("call C-2: offered (pencurian; location invalid; flags invalid_location, no_candidate)"), head
    assert columns.split() == ["time", "kind", "who", "unit", "detail"]
    assert lines[0].split()[1:] == ["new", "-", "-", "call", "C-2", "from", "mqtt"]
    assert lines[1].split()[1:4] == ["answered", "piket-polres", "-"]
    assert "sha256 00aa" in lines[2] and '"by"' not in r.stdout and "{" not in r.stdout
    timeline = json.loads(ctl("call", "show", "C-2", "--db", str(db), "--json").stdout)["timeline"]
    assert [(e["kind"], e["who"]) for e in timeline] == [("call.new", "-"), ("call.answered", "piket-polres"), ("call.duplicate", "-")]
    assert timeline[1]["detail"] == {"detail": "answered", "by": "piket-polres"}


def test_status_counts_open_calls_and_names_emergencies_and_older_daemons_still_decode(tmp_path: Path) -> None:
    """Pass: the status reply's `calls` has 2 open (1 offered, 1 assigned) and the emergency of unit R2-01; the view
    says EMERGENCY with its call and unit; a reply without `calls` (an older daemon) decodes with calls None."""
    db = seeded(tmp_path)
    store = Store(db)
    try:
        info = Queries(SimpleNamespace(store=store)).calls(datetime.now(UTC))  # type: ignore[arg-type]
    finally:
        store.close()
    assert info.open == 2 and info.states == {"offered": 1, "assigned": 1} and info.oldest_age_s is not None
    [e] = info.emergencies
    assert (e.call_id, e.unit, e.state) == ("E-1", "R2-01", "assigned")
    old: dict[str, Any] = {
        "version": "0.1", "node": NODE, "name": "", "tier": "polres", "pid": 1, "config": "/etc/alkomd/alkomd.toml",
        "started": "2026-01-01T00:00:00.000Z", "uptime_s": 1.0, "ready": True,
        "broker": {"host": "h", "port": 1, "connected": True, "since": "2026-01-01T00:00:00.000Z", "last_error": ""},
        "outbox": {"depth": 0, "oldest_unsent_age_s": None},
        "database": {"path": "/x", "size_bytes": 1, "wal_bytes": 0, "schema_version": 3},
        "devices": {}, "units": {}, "last_reload": None,
    }
    assert control.decode(control.Status, old).calls is None
    new = control.decode(control.Status, {**old, "calls": control.encode(info)})
    assert new.calls == info

    from io import StringIO

    from rich.console import Console

    from alkomd.daemon.ctl.status.view import status_view

    out = StringIO()
    Console(file=out, width=200).print(status_view(new))
    text = out.getvalue()
    assert "2 open (1 assigned, 1 offered" in text and "EMERGENCY" in text and "E-1: unit R2-01" in text


def test_a_call_to_a_running_daemon_shows_in_status_and_calls(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """Pass: after one call reaches the daemon, `status --json` counts 1 open call and `calls --open` lists it
    (read-only, while the daemon runs)."""
    _configure(station)
    sub = subscriber_factory(broker.port)
    ptys(station.links[0])
    daemons(station.config)
    _online(sub)
    sub.client.publish(f"{NODE}/call/new", _call("C-7"), qos=1)
    sock = str(station.dir / "control.sock")
    wait_until(lambda: (control.query_status(Path(sock)).calls or control.CallsInfo(0, {}, [], None)).open == 1,
               20, "1 open call in status")
    r = ctl("status", "--socket", sock, "--json")
    assert json.loads(r.stdout)["calls"]["open"] == 1
    r = ctl("calls", "--open", "--db", str(station.db), "--json")
    [c] = json.loads(r.stdout)
    assert c["call_id"] == "C-7" and c["open"] is True and c["location"] == "ok"
    assert "1 open" in ctl("status", "--socket", sock).stdout
