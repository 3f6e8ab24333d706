"""The contract's examples as the example station really publishes them: `python tests/contract_examples.py` rewrites them.

The station is `config/alkomd.toml` (Polres Bone Bolango) with its real jurisdictions, run in
process on a fixed clock: its units report near Suwawa, a radio presses its emergency, a caller
rings 110 from inside the Polres's regency, the duty officer answers, an unanswered call
escalates to the Polda, and the Polda takes a call from the Polres while the Polres is offline.
Every outbound example in docs/contract/examples/ is the payload that run put in the outbox (or
built with the contract's own functions where no outbox is involved: state, health, probe); the inbound
examples (call-new, call-event, unit-status-set) are what the run fed in. `tests/test_contract.py`
compares the files with a fresh run (msg_id aside), so an example cannot drift from the daemon.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alkomd.daemon import __version__, config
from alkomd.daemon.calls import dispatch
from alkomd.daemon.calls.desk import CallDesk
from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.publisher import Publisher
from alkomd.daemon.positions.batch import StatusRequest
from alkomd.daemon.positions.station import Station
from alkomd.daemon.records import Counters, DeviceState, DeviceStatus, Fix, RadioStatus
from alkomd.daemon.store.database import Store

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "contract" / "examples"
T0 = datetime(2026, 11, 22, 2, 15, 7, 250_000, tzinfo=UTC)
SUWAWA = (0.5549, 123.3094)  # inside Kabupaten Bone Bolango (75.03), the example station's regency
NODE = "polri110/gorontalo/bone-bolango"
INBOUND = ("call-new", "call-event", "unit-status-set")


def _fix(device: str, t: datetime, dlat: float, radio: str | None = None, kmh: float = 42.35) -> Fix:
    return Fix(device, t, SUWAWA[0] + dlat, SUWAWA[1] + dlat / 2, 3 if radio is None else 2, t + timedelta(milliseconds=184), 0.0,
               14.26 if radio is None else None, kmh, 87.44, 0.9 if radio is None else None, 9 if radio is None else None, radio)


def build() -> dict[str, Any]:
    """Run the example station and return {example name: payload}."""
    cfg = config.load(ROOT / "config" / "alkomd.toml")
    index = config.load_jurisdictions(cfg)
    cfg = replace(cfg, dispatch=replace(cfg.dispatch, answer_timeout_polres_s=60))
    now = [T0]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        loop = asyncio.new_event_loop()
        store = Store(Path(tmp) / "polres.db", "normal")
        try:
            store.anchor = lambda head: contract.audit_head_message(NODE, head)
            station = Station(cfg, store, Publisher(store, loop), loop, now=lambda: now[0])
            desk = CallDesk(cfg, store, station, station.publisher, loop, lambda: now[0], index)
            station.on_committed = desk.units_changed
            station.on_emergency = desk.emergency

            counters = Counters(73411, 1198, 2, 0, 17, 298, 1, 0)
            station.submit(DeviceStatus("r2-01-gps", "nmea", DeviceState.CONNECTED, T0, counters))
            for i, (device, dlat) in enumerate((("r2-01-gps", 0.0102), ("r2-02-gps", -0.0231), ("r4-07-modem", 0.0410))):
                station.submit(_fix(device, T0 - timedelta(seconds=3 - i), dlat))
            station.submit(_fix("base-radio", T0 - timedelta(seconds=1), 0.0051, radio="100-1001", kmh=4.4))
            station.submit(_fix("base-radio", T0 - timedelta(seconds=1), 0.0077, radio="100-1099", kmh=3.1))  # in no [[unit]]
            status_set = {"status": "available", "by": "piket-bonebol-1"}
            station.submit(StatusRequest("SPKT-1", json.dumps(status_set).encode()))
            station.flush()
            now[0] = T0 + timedelta(seconds=40)
            station.submit(RadioStatus("base-radio", "100-1001", 99, now[0], 40.0))
            station.flush()

            now[0] = T0 + timedelta(minutes=2)
            call = {"call_id": "BNB-20261122-000123", "caller": "+6281234500000", "lat": SUWAWA[0] + 0.0035,
                    "lon": SUWAWA[1] - 0.0021, "accuracy_m": 25, "received_at": "2026-11-22T02:17:05.120Z",
                    "category": "pelaporan/kecelakaan", "note": "tabrakan motor di depan pasar"}
            desk.call_new(json.dumps(call).encode())
            event = {"action": "answer", "by": "piket-bonebol-1", "note": "Unit terdekat", "msg_id": "console-2-000918"}
            now[0] += timedelta(seconds=12)
            desk.event(call["call_id"], json.dumps(event).encode())
            late = dict(call, call_id="BNB-20261122-000124", category="pengaduan/ancaman", received_at="2026-11-22T02:30:41.003Z")
            now[0] = T0 + timedelta(minutes=15)
            desk.call_new(json.dumps(late).encode())
            now[0] += timedelta(seconds=cfg.dispatch.answer_timeout_polres_s)
            desk._run(late["call_id"], dispatch.Tick(), [])

            rows = store.conn.execute("SELECT kind, topic, payload FROM outbox ORDER BY id").fetchall()
            first: dict[str, dict[str, Any]] = {}
            for kind, _topic, payload in rows:
                if payload:
                    first.setdefault(kind, json.loads(payload))
            out["device-status"] = first["device_status"]
            out["unit-position"] = first["position"]
            out["unit-status"] = first["unit_status"]
            out["device-radio"] = first["radio"]
            out["unit-emergency"] = first["emergency"]
            out["unit-alert"] = first["alert"]
            out["call-event-result"] = first["event_result"]
            out["audit-head"] = first["audit_head"]
            states = [json.loads(p) for k, t, p in rows if k == "call_state" and t.endswith(call["call_id"])]
            out["call-state"] = next(s for s in states if s["state"] == "assigned")
            out["call-new"] = call
            out["call-event"] = event
            out["unit-status-set"] = status_set
            out["state"] = json.loads(contract.state_payload("online", __version__, T0))
            out["probe"] = json.loads(contract.link_probe_payload("3a11429daf915e46", T0, __version__))
            out["health"] = json.loads(contract.health_payload(
                now[0], 86412.4, 0, [contract.DeviceHealth("r2-01-gps", "nmea", "connected", counters, 0.8)], outbox_bytes=0))
            for timer in desk._timers.values():
                timer.cancel()
        finally:
            store.close()

        polda_cfg = config.load(ROOT / "config" / "polda-gorontalo.toml")
        polda_index = config.load_jurisdictions(polda_cfg)
        polda_store = Store(Path(tmp) / "polda.db", "normal")
        try:
            polda_station = Station(polda_cfg, polda_store, Publisher(polda_store, loop), loop, now=lambda: now[0])
            polda = CallDesk(polda_cfg, polda_store, polda_station, polda_station.publisher, loop, lambda: now[0], polda_index)
            polda.node_below_state(NODE, contract.state_payload("offline", __version__, now[0]).encode())
            taken = dict(call, call_id="BNB-20261122-000125", received_at="2026-11-22T02:41:12.551Z")
            polda.node_below_call(NODE, "new", json.dumps(taken).encode())
            marker = polda_store.conn.execute("SELECT payload FROM outbox WHERE kind = 'call_taken'").fetchone()
            out["call-taken"] = json.loads(marker[0])
            for timer in polda._timers.values():
                timer.cancel()
        finally:
            polda_store.close()
            loop.close()
    return out


def comparable(payload: Any) -> Any:
    """A payload without its msg_id (random per run)."""
    return {k: v for k, v in payload.items() if k != "msg_id"} if isinstance(payload, dict) else payload


def write() -> None:
    for name, payload in build().items():
        (EXAMPLES / f"{name}.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        page = ROOT / "docs" / "contract" / f"{name}.md"
        text = page.read_text(encoding="utf-8")
        head, sep, tail = text.partition("## Example\n\n```json\n")
        if sep:
            _body, fence, rest = tail.partition("\n```")
            page.write_text(head + sep + json.dumps(payload, indent=2, ensure_ascii=False) + fence + rest, encoding="utf-8")


if __name__ == "__main__":
    write()
    sys.exit(0)
