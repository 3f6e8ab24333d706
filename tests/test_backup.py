"""`alkomctl backup`: an online copy of a running station's database, verified, never half-written."""

from __future__ import annotations

import json
import sqlite3
import stat
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Daemon, Feeder, Station, Subscriber, wait_until

from alkomd.daemon import ctl
from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.store.audit import AuditEntry, verify
from alkomd.daemon.store.database import Store
from alkomd.drivers.simulator import PtyGps

PREFILL = 30_000  # history rows, so the database is some MB and the copy takes several steps


def _prefill(db: Path, rows: int) -> None:
    store = Store(db)
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    with store.db.atomic():
        store.conn.executemany(
            "INSERT INTO positions (unit, device, time, received, lat, lon, msg_id) VALUES ('R2-00', 'gps0', ?, ?, ?, ?, '')",
            [((t0 + timedelta(seconds=i)).isoformat(), (t0 + timedelta(seconds=i)).isoformat(), 0.5 + i * 1e-6, 123.0)
             for i in range(rows)],
        )
    store.close()


def run_ctl(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = ctl.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_backup_while_the_daemon_writes_fixes(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber], capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    """Pass: the copy passes integrity_check, holds 100% of the positions committed before the backup started, its
    audit chain verifies, and the daemon publishes every fix fed during the backup."""
    station.write_config()
    _prefill(station.db, PREFILL)
    sub = subscriber_factory(broker.port)
    pty = ptys(station.links[0])
    daemons(station.config)
    feed = Feeder(pty)
    wait_until(lambda: bool(sub.on("/device/gps0/status")), what="gps0 status")
    feed.write(5, gap_s=0.05)
    wait_until(lambda: len(sub.on("/unit/R2-00/position")) == 5, what="5 positions")

    stop = threading.Event()

    def keep_feeding() -> None:
        while not stop.is_set():
            feed.write(1, gap_s=0.02)

    writer = threading.Thread(target=keep_feeding, daemon=True)
    writer.start()
    try:
        wait_until(lambda: len(sub.on("/unit/R2-00/position")) >= 8, what="fixes flowing")
        before = {m for (m,) in station.query("SELECT msg_id FROM positions WHERE msg_id != ''")}
        count_before = station.query("SELECT count(*) FROM positions")[0][0]
        target = tmp_path / "backup" / "alkomd-copy.db"
        target.parent.mkdir()
        code, out, err = run_ctl(capsys, "backup", str(target), "--db", str(station.db), "--json")
        wait_until(lambda: len(sub.on("/unit/R2-00/position")) >= len(before) + 3, what="fixes during and after the backup")
    finally:
        stop.set()
        writer.join(10)
    assert code == 0, err
    report = json.loads(out)
    assert report["integrity"] == "ok" and report["steps"] > 1 and report["pages"] > 256, report
    assert report["audit_ok"] is True and report["audit_entries"] >= 1  # R2-00 offline -> available is audited
    assert report["positions"] >= count_before >= PREFILL + 5

    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["alkomd-copy.db"]  # no temporary file, no WAL
    con = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert con.execute("PRAGMA user_version").fetchone()[0] == report["schema_version"] == station.query("PRAGMA user_version")[0][0]
        copied = {m for (m,) in con.execute("SELECT msg_id FROM positions WHERE msg_id != ''")}
        assert before <= copied, f"{len(before - copied)} committed positions missing from the copy"
        assert verify(con.execute("SELECT id, time, kind, call_id, unit, detail, prev_hash, hash FROM audit ORDER BY id")).ok
    finally:
        con.close()

    # The words people read, and an existing file is not replaced without --force.
    code, out, err = run_ctl(capsys, "backup", str(target), "--config", str(station.config))
    assert code == 73 and "--force" in err
    code, out, err = run_ctl(capsys, "backup", str(target), "--config", str(station.config), "--force")
    assert code == 0, err
    assert f"backup of {station.db} written to {target}" in out and "integrity_check ok" in out and "hash chain verified" in out


def test_refusals_leave_nothing_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Pass: each bad case has its exit code and leaves no file (and no temporary file) in the target folder."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "copy.db"
    code, _, err = run_ctl(capsys, "backup", str(target), "--db", str(tmp_path / "none.db"))
    assert code == 66 and "no database" in err

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not SQLite " * 500)
    code, _, err = run_ctl(capsys, "backup", str(target), "--db", str(junk))
    assert code == 65 and "not a database" in err

    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    code, _, err = run_ctl(capsys, "backup", str(target), "--db", str(other))
    assert code == 65 and "not an alkomd database" in err

    db = tmp_path / "alkomd.db"
    Store(db).close()
    code, _, err = run_ctl(capsys, "backup", str(db), "--db", str(db), "--force")
    assert code == 73 and "the database itself" in err
    code, _, err = run_ctl(capsys, "backup", str(tmp_path / "no" / "such" / "dir.db"), "--db", str(db))
    assert code == 73 and "no folder" in err
    code, _, err = run_ctl(capsys, "backup", str(out_dir), "--db", str(db), "--force")  # a folder is never replaced
    assert code == 73 and "is a folder" in err and out_dir.is_dir()
    assert list(out_dir.iterdir()) == []


def test_a_broken_audit_chain_is_copied_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Pass: exit 65 naming the first bad entry; the faithful copy is written all the same."""
    db = tmp_path / "alkomd.db"
    store = Store(db)
    now = datetime.now(UTC)
    store.record([], [], now, [AuditEntry(now, "call.received", f"C-{i}", "", "{}") for i in range(3)])
    store.conn.execute("DROP TRIGGER audit_no_update")
    store.conn.execute("UPDATE audit SET detail = '{\"forged\":1}' WHERE id = 2")
    store.close()
    target = tmp_path / "copy.db"
    code, out, _ = run_ctl(capsys, "backup", str(target), "--db", str(db))
    assert code == 65 and "AUDIT RECORD BROKEN at entry 2" in out
    assert target.is_file()
