"""The central history in PostgreSQL (daemon/store/history_pg.py) against a real private PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alkomd.daemon.mqtt.contract.history import HistoryFix
from alkomd.daemon.store.database import StoreError
from alkomd.daemon.store.history_pg import SCHEMA_VERSION, PgHistoryStore
from tests.conftest import Postgres

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def fixes(n: int, tag: str) -> list[HistoryFix]:
    return [HistoryFix("polri110/gorontalo/kota", f"U{i % 7}", f"2026-12-07T08:00:{i % 60:02d}.{i:03d}Z", 0.5 + i / 1000, 123.0,
                       f"{tag}-{i}", f'{{"msg_id": "{tag}-{i}", "note": "ünïcode"}}') for i in range(n)]


def test_a_batch_is_stored_once_however_often_it_is_delivered_and_old_rows_are_pruned(postgres: Postgres) -> None:
    store = PgHistoryStore(postgres.dsn)
    try:
        assert store.add(fixes(500, "a"), "w1", NOW) == 500
        assert store.add(fixes(500, "a"), "w2", NOW) == 0  # a redelivery: the unique key
        assert store.add(fixes(510, "a")[495:], "w2", NOW + timedelta(days=40)) == 10  # half new
        with psycopg.connect(postgres.dsn) as pg:
            assert pg.execute("SELECT count(*), count(DISTINCT msg_id) FROM below_positions").fetchone() == (510, 510)
            payload, t = pg.execute("SELECT payload, time FROM below_positions WHERE msg_id = 'a-3'").fetchone()  # type: ignore[misc]
            assert payload == '{"msg_id": "a-3", "note": "ünïcode"}' and t == datetime(2026, 12, 7, 8, 0, 3, 3000, tzinfo=UTC)
        assert store.prune(NOW + timedelta(days=10)) == 500  # stored before: gone; the 10 stored later stay
    finally:
        store.close()


def test_two_workers_starting_at_once_share_one_schema_and_a_newer_one_is_refused(postgres: Postgres) -> None:
    a, b = PgHistoryStore(postgres.dsn), PgHistoryStore(postgres.dsn)
    a.close()
    b.close()
    with psycopg.connect(postgres.dsn, autocommit=True) as pg:
        assert pg.execute("SELECT version FROM alkomd_history_schema").fetchall() == [(SCHEMA_VERSION,)]
        pg.execute("UPDATE alkomd_history_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this alkomd knows"):
        PgHistoryStore(postgres.dsn)


def test_a_lost_connection_is_opened_again_at_the_next_batch(postgres: Postgres) -> None:
    store = PgHistoryStore(postgres.dsn)
    try:
        assert store.add(fixes(3, "b"), "w", NOW) == 3
        with psycopg.connect(postgres.dsn, autocommit=True) as pg:  # the server ends the worker's session
            pg.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'alkomd-history'")
        with pytest.raises(StoreError, match=r"cannot write to the history postgresql postgres on 127\.0\.0\.1"):
            store.add(fixes(5, "b"), "w", NOW)  # not acknowledged: the broker keeps the batch
        assert store.add(fixes(5, "b"), "w", NOW) == 2
    finally:
        store.close()


def test_an_unreachable_database_is_one_message_without_the_password() -> None:
    with pytest.raises(StoreError) as err:
        PgHistoryStore("postgresql://alkomd:secret@127.0.0.1:9/history?connect_timeout=2")
    assert "cannot open the history postgresql history on 127.0.0.1:9" in str(err.value) and "secret" not in str(err.value)
