"""The daemon's WAL is checkpointed by a thread of its own, never inside a commit; the GC policy keeps full
collections off the automatic schedule (a real SQLite file, a real subprocess)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from alkomd.daemon.store.audit import AuditEntry
from alkomd.daemon.store.database import Message, Store
from tests.conftest import wait_until


def _write(store: Store, n: int) -> None:
    now = datetime.now(UTC)
    for i in range(n):
        store.record([], [Message(f"m{i}", "test", "t/x", "x" * 200)], now, [AuditEntry(now, "test.entry", "", "", str(i))])


def test_daemon_store_never_checkpoints_inside_a_commit_and_its_thread_does(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.db", "full", background_checkpoint=True)
    try:
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        _write(store, 300)
        checkpointer = store._checkpointer
        assert checkpointer is not None
        wait_until(lambda: checkpointer.last[0] > 0 and checkpointer.last[1] == checkpointer.last[0], 20,
                   "a checkpoint that copied the whole WAL back")
    finally:
        store.close()
    assert not checkpointer._thread.is_alive()
    conn = sqlite3.connect(tmp_path / "a.db")
    assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == 300
    conn.close()


def test_other_stores_keep_sqlites_automatic_checkpoint(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    try:
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        assert store._checkpointer is None
    finally:
        store.close()


def test_gc_policy_freezes_start_up_and_takes_full_collections_off_the_automatic_schedule() -> None:
    code = (
        "import gc; from alkomd.daemon import gcpolicy; before = gc.get_threshold(); gcpolicy.settle(); "
        "print(before[2], gc.get_threshold()[2], gc.get_freeze_count() > 0); gcpolicy.collect_full()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout.split()
    assert out[0] == "10"  # CPython's own: a full collection after 10 generation-1 ones
    assert int(out[1]) >= 1 << 30
    assert out[2] == "True"
