"""The tables of `alkomctl status|units|devices` for people (rich)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from alkomd.daemon.control import DeviceRow, StandbyStatus, Status, UnitRow


def ago(seconds: float | None) -> str:
    """A duration the way people read it: 12s, 3m04s, 2h05m, 3d04h."""
    if seconds is None:
        return "-"
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


STATE_STYLE = {
    "waiting": "cyan", "connected": "green", "available": "green", "no_fix": "yellow", "silent": "yellow", "degraded": "yellow",
    "starting": "yellow", "disconnected": "red", "offline": "red", "assigned": "cyan", "enroute": "cyan",
    "onscene": "cyan", "unavailable": "dim", "disabled": "dim", "stopped": "dim",
}


def _styled(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def status_view(s: Status, standby: StandbyStatus | None = None) -> Table:
    """The active process's status; `standby`: the node's standby, when one answered beside it."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    name = f" {s.name}" if s.name else ""
    t.add_row("alkomd", f"{s.version}  {s.node} ({s.tier}){name}")
    t.add_row("ready", f"{'yes' if s.ready else 'no'}, up {ago(s.uptime_s)} (since {s.started}), pid {s.pid}")
    role = f"{s.role}, took over at {s.took_over} after waiting as a standby" if s.took_over else s.role
    waiting = f"; standby: pid {standby.pid}, waiting since {standby.started}" if standby is not None else "; no standby"
    t.add_row("role", role + waiting)
    b = s.broker
    if b.connected:
        link = Text(f"connected to {b.host}:{b.port} since {b.since}", style="green")
    else:
        link = Text(f"unreachable ({b.host}:{b.port}) since {b.since}: recording locally", style="red")
        if b.last_error:
            link.append(f" (last error: {b.last_error})")
    t.add_row("broker", link)
    o = s.outbox
    oldest = f", oldest {ago(o.oldest_unsent_age_s)}" if o.oldest_unsent_age_s is not None else ""
    outbox = Text(f"{o.depth} unsent{oldest}")
    if o.held_reason:
        outbox.append(f" ({o.held_reason})", style="yellow")
    t.add_row("outbox", outbox)
    d = s.database
    t.add_row("database", f"{d.path}, {_size(d.size_bytes)} (+ WAL {_size(d.wal_bytes)}), schema v{d.schema_version}")
    t.add_row("devices", _counts(s.devices))
    t.add_row("units", _counts(s.units))
    if s.below is not None:
        w = s.below
        snap = f"; {w.from_snapshot} from the snapshot of {w.snapshot_time}" if w.snapshot_time else ""
        second = ""
        if w.child_pid is not None or w.child_restarts:
            child = f"child {w.child_pid}" if w.child_pid is not None else "child not running"
            second = f"; second connection: {child}, started again {w.child_restarts} times"
        t.add_row("units below", f"{w.units} followed, {w.located} with a position{snap}; "
                                 f"{w.positions} positions and {w.statuses} statuses taken in since the start{second}")
    if s.calls is not None:
        c = s.calls
        oldest = f", oldest {ago(c.oldest_age_s)}" if c.oldest_age_s is not None else ""
        t.add_row("calls", f"{c.open} open ({_counts(c.states)}{oldest}): see alkomctl calls --open" if c.open else "none open")
        for e in c.emergencies:
            age = f", {ago(e.age_s)} ago" if e.age_s is not None else ""
            t.add_row(Text("EMERGENCY", style="bold red"),
                      Text(f"{e.call_id}: unit {e.unit or '?'} pressed its emergency button ({e.state}{age})", style="bold red"))
    if s.implausible_fixes:
        t.add_row("fixes rejected", Text(f"{s.implausible_fixes} implausible (jumps, stale dates): see alkomctl units", style="yellow"))
    t.add_row("config", s.config)
    if s.last_reload is not None:
        r = s.last_reload
        t.add_row("last reload", Text(f"{r.time}: {'ok' if r.ok else 'REFUSED'}: {r.summary}", style="" if r.ok else "red"))
    return t


def units_view(rows: list[UnitRow]) -> Table:

    t = Table(title=f"{len(rows)} units", title_justify="left")
    for col in ("unit", "callsign", "type", "device/radio", "status", "last fix (UTC)", "age", "heard", "lat", "lon", "source", "rejected"):
        t.add_column(col, justify="right" if col in ("age", "heard", "lat", "lon", "rejected") else "left", no_wrap=True)
    for u in rows:
        where = "/".join(x for x in (u.device, u.radio) if x) or "-"
        status = _styled(u.status)
        if u.call_id:
            status.append(f" {u.call_id}")
        t.add_row(
            u.id, u.callsign or "-", u.type, where, status, u.last_fix or "never", ago(u.age_s),
            ago(u.heard_age_s),
            "-" if u.lat is None else f"{u.lat:.6f}", "-" if u.lon is None else f"{u.lon:.6f}", u.source or "-",
            str(u.implausible_fixes) if u.implausible_fixes else "",
        )
    return t


def devices_view(rows: list[DeviceRow]) -> Table:

    t = Table(title=f"{len(rows)} devices", title_justify="left")
    numbers = ("sentences", "fixes", "refused", "errors", "reconnects", "last data")
    for col in ("device", "driver", "state", "since", *numbers, "detail"):
        t.add_column(col, justify="right" if col in numbers else "left")
    for d in rows:
        c = d.counters
        detail = d.detail
        if d.modem is not None:
            m = d.modem
            parts = [m.network, m.operator, m.sim, None if m.signal_dbm is None else f"{m.signal_dbm} dBm",
                     None if m.temperature_c is None else f"{m.temperature_c:g} °C"]
            modem = "modem " + " ".join(p for p in parts if p)
            detail = f"{detail}; {modem}" if detail else modem
        t.add_row(
            d.id, d.driver, _styled(d.state), d.since or "-",
            str(c.sentences) if c else "-", str(c.fixes) if c else "-", str(d.refused_fixes) if d.refused_fixes else "",
            str(c.checksum_errors + c.parse_errors) if c else "-", str(c.reconnects) if c else "-",
            ago(d.last_data_age_s), detail or "",
        )
    return t
