"""Fault-matrix C4: two history workers of a Polda share a flood of positions through an MQTT 5 shared subscription;
one is SIGKILLed in the middle and started again: every position is stored, none twice (real mosquitto, real
processes, a real SQLite file, and the same with a real PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.mqtt.contract.history import history_group, history_subscriptions, parse_history_fix
from tests.conftest import wait_until

POLDA = "polri110/gorontalo"
N = 3000


class Worker:
    def __init__(self, cfg: Path, name: str) -> None:
        self.cfg, self.name = cfg, name
        self.log: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Worker:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alkomd.daemon.central.main", "--config", str(self.cfg), "--name", self.name,
             "--log-level", "info"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.log.append(line)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        return self.proc.returncode


class History:
    """Reads the history the workers write: the SQLite file, or PostgreSQL when `dsn` is set."""

    def __init__(self, path: Path, dsn: str = "") -> None:
        self.path, self.dsn = path, dsn

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        if self.dsn:
            import psycopg

            try:
                with psycopg.connect(self.dsn, autocommit=True) as pg:
                    return pg.execute(sql).fetchall()  # type: ignore[arg-type]
            except psycopg.errors.UndefinedTable:  # not created yet
                return []
        if not self.path.exists():
            return []
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []
        finally:
            conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def polda(request: pytest.FixtureRequest, tmp_path: Path, central_broker: Broker) -> Iterator[tuple[Path, History]]:
    broker = central_broker
    cfg = tmp_path / "polda.toml"
    history = History(tmp_path / "history.db", request.getfixturevalue("postgres").dsn if request.param == "postgresql" else "")
    store = f'dsn = "{history.dsn}"' if history.dsn else f'path = "{history.path}"'
    cfg.write_text(
        f'[node]\npath = "gorontalo"\ntier = "polda"\n[store]\npath = "{tmp_path}/polda.db"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\ntls = false\n[history]\n{store}\n'
    )
    yield cfg, history


def position(i: int, tag: str) -> tuple[str, str]:
    owner = f"{POLDA}/polres-{i % 3}"
    unit = f"U{i % 300:03d}"
    t = f"2026-12-07T08:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z"
    body = {"unit": unit, "lat": 0.5 + (i % 100) / 1000, "lon": 123.0 + (i % 77) / 1000, "time": t, "received": t,
            "speed_kmh": 0.0, "course": 0.0, "hdop": 1.0, "sats": 9, "fix": "3d", "source": "test", "msg_id": f"{tag}-{i}",
            "alt": None}
    return f"{owner}/unit/{unit}/position", json.dumps(body)


def test_contract_history_subscriptions_are_shared_and_cover_every_level_below() -> None:
    assert history_group("polri110/gorontalo") == "alkomd-history-polri110-gorontalo"
    assert history_subscriptions(POLDA, "polda") == (f"$share/alkomd-history-polri110-gorontalo/{POLDA}/+/unit/+/position",)
    assert history_subscriptions("polri110", "mabes") == (
        "$share/alkomd-history-polri110/polri110/+/unit/+/position", "$share/alkomd-history-polri110/polri110/+/+/unit/+/position")
    assert history_subscriptions(f"{POLDA}/kota", "polres") == ()
    topic, body = position(7, "x")
    fix = parse_history_fix(POLDA, topic, body.encode())
    assert fix is not None and (fix.owner, fix.unit, fix.msg_id) == (f"{POLDA}/polres-1", "U007", "x-7")
    assert parse_history_fix(POLDA, topic, b'{"lat": 1, "lon": 2, "time": "yesterday"}') is None
    assert parse_history_fix(POLDA, topic, b"\xff not json") is None
    assert parse_history_fix(POLDA, f"{POLDA}/unit/U1/position", body.encode()) is None  # the Polda's own unit: not below


@pytest.mark.timeout(300)
def test_c4_two_workers_share_a_flood_one_killed_nothing_lost_nothing_twice(central_broker: Broker,
                                                                         polda: tuple[Path, History]) -> None:
    cfg, history = polda
    rows = history.rows
    broker = central_broker
    a, b = Worker(cfg, "a").start(), Worker(cfg, "b").start()
    pub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="test-stations", protocol=MQTTProtocolVersion.MQTTv5)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        # A shared subscription gets no retained messages: publish warm-up positions until both workers store some,
        # so both are subscribed before the flood (then the broker must spread the flood over both).
        warm = [0]

        def both_store() -> bool:
            topic, body = position(warm[0], "warm")
            pub.publish(topic, body, qos=1).wait_for_publish(10)
            warm[0] += 1
            return len(rows("SELECT DISTINCT worker FROM below_positions")) == 2

        wait_until(both_store, 60, "both workers storing positions")
        infos = []
        for i in range(N):
            topic, body = position(i, "f")
            infos.append(pub.publish(topic, body, qos=1))
            if i == N // 3:
                a.kill()  # mid-flood: what it had not acknowledged stays with its session
            if i == N // 2:
                a.start()  # the same name: the same client id and session
        pub.publish(f"{POLDA}/polres-1/unit/U001/position", "not json", qos=1)
        for info in infos:
            info.wait_for_publish(30)
        try:
            wait_until(lambda: rows("SELECT count(*) FROM below_positions WHERE msg_id LIKE 'f-%'")[0][0] == N, 120,
                       f"all {N} flood positions stored")
        except AssertionError as exc:
            got = rows("SELECT worker, count(*) FROM below_positions WHERE msg_id LIKE 'f-%' GROUP BY worker")
            raise AssertionError(f"{exc}: stored {got}; worker a: {''.join(a.log)[-2000:]}; worker b: {''.join(b.log)[-2000:]}; "
                                 f"broker: {broker.log_path.read_text()[-3000:]}") from None
        dupes = rows("SELECT count(*) - count(DISTINCT msg_id) FROM below_positions")[0][0]
        assert dupes == 0
        per_worker = dict(rows("SELECT worker, count(*) FROM below_positions WHERE msg_id LIKE 'f-%' GROUP BY worker"))
        assert set(per_worker) == {"a", "b"} and min(per_worker.values()) > 0, per_worker
        stored = rows("SELECT payload FROM below_positions WHERE msg_id = 'f-42'")
        assert json.loads(str(stored[0][0]))["msg_id"] == "f-42"  # the payload itself is the record
    finally:
        pub.disconnect()
        pub.loop_stop()
        codes = [w.stop() for w in (a, b)]
    assert codes == [0, 0]
    assert any("unusable skipped" in line for line in a.log + b.log)


def test_history_worker_refuses_a_config_without_history_or_at_a_polres(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text('[node]\npath = "gorontalo"\ntier = "polda"\n')
    out = subprocess.run([sys.executable, "-m", "alkomd.daemon.central.main", "--config", str(cfg)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 78 and "[history]" in out.stderr and str(cfg) in out.stderr
    cfg.write_text('[node]\npath = "gorontalo/kota"\ntier = "polres"\n[history]\npath = "h.db"\n')
    out = subprocess.run([sys.executable, "-m", "alkomd.daemon.central.main", "--config", str(cfg)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 78 and "node.tier" in out.stderr
