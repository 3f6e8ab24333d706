"""Unit availability rules, the hash-chained audit record, and unit status over a real broker."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Daemon, Feeder, Station, Subscriber, wait_until

from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.positions.availability import Availability
from alkomd.daemon.records import UnitState, UnitStatus
from alkomd.daemon.store.audit import AuditEntry, verify
from alkomd.daemon.store.database import Store
from alkomd.drivers.simulator import PtyGps

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
S = UnitStatus


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def board(states: tuple[UnitState, ...] = ()) -> Availability:
    return Availability({"R2-01": 10.0, "HT-07": 60.0}, 3, states, T0)


def test_units_start_offline_and_become_available_with_their_first_fix() -> None:
    a = board()
    assert a.states["R2-01"].status is S.OFFLINE
    st = a.fix("R2-01", at(1))
    assert st is not None and st.status is S.AVAILABLE and st.since == at(1)
    assert a.fix("R2-01", at(2)) is None  # no change, nothing to publish


def test_no_fix_for_n_intervals_means_offline_per_unit_interval() -> None:
    a = board()
    a.fix("R2-01", at(0))
    a.fix("HT-07", at(0))
    assert a.tick(at(30)) == []  # exactly 3 x 10 s: not yet
    changed = a.tick(at(30.5))
    assert [(c.unit, c.status, c.resume) for c in changed] == [("R2-01", S.OFFLINE, S.AVAILABLE)]
    assert a.tick(at(180.5))[0].unit == "HT-07"  # the radio reports every 60 s
    st = a.fix("R2-01", at(200))
    assert st is not None and st.status is S.AVAILABLE


def test_a_busy_or_off_duty_unit_resumes_its_status_when_fixes_return() -> None:
    a = board()
    a.fix("R2-01", at(0))
    assert a.set("R2-01", S.ENROUTE, at(1), call_id="c-1") is not None
    a.tick(at(100))
    assert a.states["R2-01"].status is S.OFFLINE and a.states["R2-01"].call_id == "c-1"
    st = a.fix("R2-01", at(101))
    assert st is not None and (st.status, st.call_id) == (S.ENROUTE, "c-1")
    a.set("R2-01", S.UNAVAILABLE, at(102))
    assert a.states["R2-01"].call_id is None  # off duty ends the link to the call
    a.tick(at(200))
    st = a.fix("R2-01", at(201))
    assert st is not None and st.status is S.UNAVAILABLE


def test_offline_cannot_be_set_and_unknown_units_are_refused() -> None:
    a = board()
    with pytest.raises(ValueError, match="offline follows the fixes"):
        a.set("R2-01", S.OFFLINE, at(1))
    with pytest.raises(ValueError, match="unknown unit"):
        a.set("R9-99", S.AVAILABLE, at(1))
    a.fix("R2-01", at(1))
    assert a.set("R2-01", S.AVAILABLE, at(2)) is None


def test_audit_chain_verifies_and_detects_tampering(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    for i in range(5):
        s.record([], [], at(i), [AuditEntry(at(i), "call.transition", f"c-{i % 2}", "R2-01", json.dumps({"n": i}))])
    s.record([], [], at(9), [AuditEntry(at(9), "unit.status", "", "R2-01", "{}"), AuditEntry(at(9), "x", "", "", "")])
    v = verify(s.audit_rows())
    assert v.ok and v.checked == 7
    # Append-only in the database itself.
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        s.conn.execute("UPDATE audit SET detail = '{}' WHERE id = 3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        s.conn.execute("DELETE FROM audit WHERE id = 3")
    # Someone with the file drops the triggers and edits an entry: the chain shows where.
    s.conn.execute("DROP TRIGGER audit_no_update")
    s.conn.execute("""UPDATE audit SET detail = '{"n":99}' WHERE id = 3""")
    v = verify(s.audit_rows())
    assert not v.ok and v.first_bad_id == 3 and "altered" in v.reason
    s.close()
    # A new process continues the chain from the stored head.
    s2 = Store(tmp_path / "b.db")
    s2.record([], [], at(1), [AuditEntry(at(1), "a")])
    s2.close()
    s3 = Store(tmp_path / "b.db")
    s3.record([], [], at(2), [AuditEntry(at(2), "b")])
    assert verify(s3.audit_rows()).ok
    s3.conn.execute("DROP TRIGGER audit_no_delete")
    s3.conn.execute("DELETE FROM audit WHERE id = 1")
    v = verify(s3.audit_rows())
    assert not v.ok and v.first_bad_id == 2 and "removed" in v.reason
    s3.close()


def _status(sub: Subscriber, unit: str) -> list[dict[str, object]]:
    return [m.payload for m in sub.on(f"/unit/{unit}/status")]


def test_unit_status_over_mqtt_set_offline_and_back(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    station.write_config()
    text = station.config.read_text().replace('device = "gps0"\n', 'device = "gps0"\nreport_interval_s = 0.5\n')
    station.config.write_text(text + "\n[availability]\nmissed_reports = 2\n")
    sub = subscriber_factory(broker.port)
    pty = ptys(station.links[0])
    d = daemons(station.config)
    wait_until(lambda: "gps0: starting -> waiting" in d.log, what="port open")
    feed = Feeder(pty)
    feed.write(2, gap_s=0.1)
    wait_until(lambda: bool(_status(sub, "R2-00")) and _status(sub, "R2-00")[-1]["status"] == "available", what="available")

    setter = subscriber_factory(broker.port, client_id="dispatch-console", topic="nothing/#")
    unit_topic = "polri110/gorontalo/kota-gorontalo/unit/R2-00/status/set"
    setter.client.publish(unit_topic, json.dumps({"status": "unavailable", "by": "piket-1"}), qos=1)
    wait_until(lambda: _status(sub, "R2-00")[-1]["status"] == "unavailable", what="unavailable")
    setter.client.publish(unit_topic, b'{"status": "offline", "by": "x"}', qos=1)
    setter.client.publish(unit_topic, b"not json", qos=1)
    wait_until(lambda: d.log.count("status/set refused") == 2, what="two refusals logged")

    # No fix for 2 x 0.5 s: offline; fixes again: back to unavailable (off duty), not available.
    wait_until(lambda: _status(sub, "R2-00")[-1]["status"] == "offline", what="offline")
    feed.write(1)
    wait_until(lambda: _status(sub, "R2-00")[-1]["status"] == "unavailable", what="resumed")
    last = sub.on("/unit/R2-00/status")[-1]
    assert last.payload["call_id"] is None and isinstance(last.payload["msg_id"], str)

    assert d.stop(signal.SIGTERM) == 0
    s = Store(station.db)
    rows = s.audit_rows()
    kinds = [r[2] for r in rows]
    assert kinds.count("unit.status_set_refused") == 2 and "unit.status" in kinds
    assert verify(rows).ok
    assert [st.status for st in s.unit_states()] == [S.UNAVAILABLE]
    s.close()


def _ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", *args], capture_output=True, text=True, timeout=60)


def test_alkomctl_audit_verify_and_call_show(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    s = Store(db)
    s.record([], [], at(0), [AuditEntry(at(0), "call.received", "C-1", "", '{"caller":"+62811"}'),
                             AuditEntry(at(1), "call.transition", "C-1", "R2-01", '{"to":"assigned"}'),
                             AuditEntry(at(2), "unit.status", "", "R2-01", "{}")])
    s.close()
    r = _ctl("audit", "verify", "--db", str(db))
    assert r.returncode == 0 and "3 entries" in r.stdout
    r = _ctl("call", "show", "C-1", "--db", str(db), "--json")
    body = json.loads(r.stdout)
    assert r.returncode == 0 and [e["kind"] for e in body["timeline"]] == ["call.received", "call.transition"]
    assert body["timeline"][1]["unit"] == "R2-01" and body["timeline"][1]["detail"] == {"to": "assigned"}
    assert _ctl("call", "show", "C-404", "--db", str(db)).returncode == 1
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER audit_no_update")
    con.execute("UPDATE audit SET unit = 'R2-99' WHERE id = 2")
    con.commit()
    con.close()
    r = _ctl("audit", "verify", "--db", str(db))
    assert r.returncode == 65 and "BROKEN at entry 2" in r.stdout
    r = _ctl("audit", "verify", "--db", str(tmp_path / "missing.db"))
    assert r.returncode == 66 and "no database" in r.stderr
