"""R1: the audit record's end is anchored outside the database, so a cut-short record or an older copy is found."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from conftest import Daemon, Station, Subscriber, wait_until

from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.store.audit import GENESIS, AuditHead, against_anchor, verify
from alkomd.daemon.store.database import Store

POLRES, POLDA = "polri110/gorontalo/kota-gorontalo", "polri110/gorontalo"


def _rows(db: Path) -> list[tuple[int, str, str, str, str, str, str, str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(conn.execute("SELECT id, time, kind, call_id, unit, detail, prev_hash, hash FROM audit ORDER BY id"))
    finally:
        conn.close()


def test_r1_against_the_anchor_a_short_record_and_a_rewritten_one_are_told_from_an_intact_one(tmp_path: Path) -> None:
    from alkomd.daemon.store.audit import AuditEntry

    store = Store(tmp_path / "a.db")
    t0 = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
    store.record([], [], t0, [AuditEntry(t0, "call.received", f"C-{i}", "", "{}") for i in range(5)])
    head = store.audit_head(t0)
    store.close()
    rows = _rows(tmp_path / "a.db")
    assert verify(rows).ok and head.count == 5 and head.hash == rows[-1][7]
    assert against_anchor(rows, head) == ""
    assert against_anchor(rows, AuditHead(3, rows[2][7], t0)) == "", "an older anchor is consistent with a longer record"
    assert "removed" in against_anchor(rows[:4], head), "the last entry deleted: the chain alone still verifies"
    assert verify(rows[:4]).ok
    assert "rewritten" in against_anchor(rows, AuditHead(5, "0" * 63 + "1", t0))
    assert against_anchor([], AuditHead(0, GENESIS, t0)) == ""


def _polda(path: Path, port: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    cfg = path / "alkomd.toml"
    cfg.write_text(f'[node]\npath = "gorontalo"\ntier = "polda"\n[store]\npath = "{path}/alkomd.db"\n'
                   f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntls = false\nreconnect_min_s = 0.5\nreconnect_max_s = 2\n')
    return cfg


def test_r1_a_polres_database_put_back_to_an_older_copy_is_found_by_its_polda(
    tmp_path: Path, broker: Broker, daemons: Callable[[Path], Daemon], subscriber_factory: Callable[..., Subscriber],
) -> None:
    """The Polda keeps each Polres's newest anchor. The Polres is stopped, its database copied, calls recorded, then the
    old copy put back and the Polres started: its anchor went back, and the Polda logs it as an error and records
    node.audit_rollback in its own audit record. (The Polres stopped with its calls offered: the Polda took them.)"""
    sub = subscriber_factory(broker.port, topic="polri110/#")
    polres = Station(tmp_path / "polres", broker.port)
    polres.write_config()
    polda_cfg = _polda(tmp_path / "polda", broker.port)
    polda = daemons(polda_cfg)
    d = daemons(polres.config)

    def kept() -> int:
        rows = sqlite3.connect(f"file:{tmp_path}/polda/alkomd.db?mode=ro", uri=True).execute(
            "SELECT count FROM anchors WHERE node = ?", (POLRES,)).fetchall()
        return int(rows[0][0]) if rows else -1

    wait_until(lambda: kept() >= 0, 20, "the Polda keeps the Polres's anchor")
    d.stop()
    old = tmp_path / "old.db"
    shutil.copy(polres.db, old)
    d = daemons(polres.config)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    for i in range(2):
        sub.client.publish(f"{POLRES}/call/new", json.dumps({"call_id": f"R1-{i}", "caller": "+62852", "lat": 0.545,
                                                             "lon": 123.06, "received_at": now, "category": "informasi"}), qos=1)
    wait_until(lambda: kept() > len(_rows(old)), 20, "the anchor after the calls")
    d.stop()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{polres.db}{suffix}").unlink(missing_ok=True)
    shutil.copy(old, polres.db)
    daemons(polres.config)
    wait_until(lambda: "its audit record went back" in polda.log, 20, "the Polda sees the rollback")
    wait_until(lambda: "node.audit_rollback" in [r[2] for r in _rows(tmp_path / "polda" / "alkomd.db")], 10, "on record")
    assert verify(_rows(polres.db)).ok, "the old copy's own chain is intact: only the anchor can tell"


def test_r1_alkomctl_audit_verify_tells_a_cut_short_record_by_its_anchor(tmp_path: Path) -> None:
    """`alkomctl audit verify --anchor FILE`: exit 0 when the record reaches the anchor, 3 when it is behind it (the
    tail removed by hand, triggers dropped), 65 for a broken chain; a file that is no anchor is 66."""
    import subprocess
    import sys

    from alkomd.daemon.mqtt import contract
    from alkomd.daemon.store.audit import AuditEntry

    db = tmp_path / "a.db"
    store = Store(db)
    t0 = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
    store.record([], [], t0, [AuditEntry(t0, "call.received", f"C-{i}", "", "{}") for i in range(5)])
    anchor = tmp_path / "anchor.json"
    anchor.write_text(contract.audit_head_message("polri110/x", store.audit_head(t0)).payload)
    store.close()

    def verify_cli(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "audit", "verify", "--db", str(db), *extra],
                              capture_output=True, text=True, timeout=60)

    r = verify_cli("--anchor", str(anchor))
    assert r.returncode == 0 and "reaches its anchor (5 entries)" in r.stdout, r.stdout + r.stderr
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER audit_no_delete")
    conn.execute("DELETE FROM audit WHERE id = (SELECT max(id) FROM audit)")
    conn.commit()
    conn.close()
    assert verify_cli().returncode == 0, "the chain alone still verifies"
    r = verify_cli("--anchor", str(anchor), "--json")
    assert r.returncode == 3 and json.loads(r.stdout)["behind"], r.stdout
    (tmp_path / "bad.json").write_text("{}")
    assert verify_cli("--anchor", str(tmp_path / "bad.json")).returncode == 66
