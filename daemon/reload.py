"""Configuration reload (SIGHUP): load the new file off the loop, and plan what changes live and what needs a restart.

Live: devices (start, stop, restart one driver), units (ids, callsigns, types, device/radio
mapping, report intervals), `[log] level`, `[availability]`, `[dispatch]`, `[recommend]`,
`[calls]`, the retention keys of `[store]`, `[node] name` and the jurisdictions. A restart is
needed for what the daemon's connections and topics are built from: `[node]` path, root and tier,
`[store]` path and synchronous, and all of `[mqtt]`. Such changes are reported, not applied: the
daemon keeps running on the old values until it is restarted.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from alkomd.daemon import config as config_mod
from alkomd.daemon.calls.desk import CallDesk
from alkomd.daemon.calls.jurisdictions import JurisdictionIndex
from alkomd.daemon.config import Config, DeviceConfig
from alkomd.daemon.positions.station import Station
from alkomd.daemon.records import DeviceState, DeviceStatus, utc_now
from alkomd.daemon.store.database import StoreError
from alkomd.daemon.supervisor import Supervisor

log = logging.getLogger(__name__)

RESTART_NODE_KEYS = ("path", "root", "tier")
RESTART_STORE_KEYS = ("path", "synchronous")
LIVE_SECTIONS = ("availability", "dispatch", "recommend", "calls", "radio_status")

Fingerprint = tuple[int, int] | None  # (mtime_ns, size) of the jurisdictions file


@dataclass(frozen=True)
class Loaded:
    """A new configuration, validated with its jurisdictions."""

    config: Config
    jurisdictions: JurisdictionIndex | None
    fingerprint: Fingerprint


def fingerprint(cfg: Config) -> Fingerprint:
    """How the jurisdictions file looks on disk (to notice it was replaced under the same name)."""
    if cfg.jurisdictions is None:
        return None
    try:
        st = Path(cfg.jurisdictions.file).stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def load(path: Path) -> Loaded:
    """Read and validate the file and its jurisdictions (blocking: run it in an executor). Raises ConfigError."""
    cfg = config_mod.load(path)
    index = config_mod.load_jurisdictions(cfg)
    return Loaded(cfg, index, fingerprint(cfg))


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload changes. `config` is what the daemon runs on afterwards (restart-only keys keep their old values)."""

    config: Config
    start: tuple[DeviceConfig, ...] = ()
    stop: tuple[str, ...] = ()
    restart: tuple[DeviceConfig, ...] = ()
    units_added: tuple[str, ...] = ()
    units_removed: tuple[str, ...] = ()
    units_changed: tuple[str, ...] = ()
    log_level: str | None = None
    options: tuple[str, ...] = ()  # live keys that changed, e.g. dispatch.accept_timeout_s
    jurisdictions: bool = False
    needs_restart: tuple[str, ...] = ()

    @property
    def units(self) -> bool:
        return bool(self.units_added or self.units_removed or self.units_changed)

    def summary(self) -> str:
        """One line: what changed (restart-only keys are reported separately)."""
        parts = []
        for label, items in (
            ("devices started", [d.id for d in self.start]), ("devices stopped", list(self.stop)),
            ("devices restarted", [d.id for d in self.restart]), ("units added", list(self.units_added)),
            ("units removed", list(self.units_removed)), ("units changed", list(self.units_changed)),
            ("options", list(self.options)),
        ):
            if items:
                parts.append(f"{label} {', '.join(items)}")
        if self.log_level:
            parts.append(f"log level {self.log_level}")
        if self.jurisdictions:
            parts.append("jurisdictions reloaded")
        return "; ".join(parts) if parts else "no changes"


def changed_keys(section: str, old: object, new: object) -> list[str]:
    """`section.key` for every field of two config dataclasses that differs."""
    if old is None or new is None or not dataclasses.is_dataclass(old) or type(old) is not type(new):
        return [section] if old != new else []
    return [f"{section}.{f.name}" for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]


def plan(old: Config, new: Config, old_fp: Fingerprint = None, new_fp: Fingerprint = None) -> ReloadPlan:
    """Compare the running and the new configuration.

    A section this module does not know as live (`[mqtt]`, or one added later) needs a restart.
    """
    restart: list[str] = []
    options: list[str] = []
    for f in dataclasses.fields(old):
        section = f.name
        if section in ("source", "devices", "units", "jurisdictions", "log"):
            continue
        keys = changed_keys(section, getattr(old, section), getattr(new, section))
        if section in ("node", "store"):
            fixed = RESTART_NODE_KEYS if section == "node" else RESTART_STORE_KEYS
            restart += [k for k in keys if k.split(".", 1)[1] in fixed]
            options += [k for k in keys if k.split(".", 1)[1] not in fixed]
        elif section in LIVE_SECTIONS:
            options += keys
        else:
            restart += keys
    effective = replace(
        new,
        node=replace(old.node, name=new.node.name),
        store=replace(new.store, **{k: getattr(old.store, k) for k in RESTART_STORE_KEYS}),
        **{k.split(".", 1)[0]: getattr(old, k.split(".", 1)[0]) for k in restart if not k.startswith(("node.", "store."))},
    )

    was = {d.id: d for d in old.devices if d.enabled}
    now = {d.id: d for d in new.devices if d.enabled}
    old_units = {u.id: u for u in old.units}
    new_units = {u.id: u for u in new.units}
    return ReloadPlan(
        config=effective,
        start=tuple(d for i, d in now.items() if i not in was),
        stop=tuple(i for i in was if i not in now),
        restart=tuple(d for i, d in now.items() if i in was and was[i] != d),
        units_added=tuple(u for u in new_units if u not in old_units),
        units_removed=tuple(u for u in old_units if u not in new_units),
        units_changed=tuple(u for u in new_units if u in old_units and old_units[u] != new_units[u]),
        log_level=new.log.level if new.log.level != old.log.level else None,
        options=tuple(options),
        jurisdictions=old.jurisdictions != new.jurisdictions or old_fp != new_fp,
        needs_restart=tuple(restart),
    )


async def apply(
    plan: ReloadPlan,
    loaded: Loaded,
    drivers: Supervisor,
    station: Station,
    desk: CallDesk,
    log_level_override: str | None,
    stopping: Callable[[], bool],
) -> None:
    """Apply a plan to the running daemon's parts (event loop thread; waits off the loop for drivers to stop).

    Order: drivers that go or change stop first (their ports are free again), then the units and
    options change, then the new and changed drivers start, so their first fixes find their units.
    """
    cfg = plan.config
    kept = {d.id for d in cfg.devices}  # a stopped device still listed was disabled (enabled = false)
    for device in plan.stop:
        rd = drivers.get(device)
        if rd is None:
            continue
        await drivers.stop(rd)
        station.flush()  # what it handed over before it stopped
        # Its retained status must not say "connected" for ever: say why it stopped.
        why = "disabled in the configuration" if device in kept else "removed from the configuration"
        station.device_removed(DeviceStatus(rd.device, rd.driver_name, DeviceState.DISCONNECTED, utc_now(), rd.driver.counters(), why))
    for dev in plan.restart:
        rd = drivers.get(dev.id)
        if rd is not None:
            await drivers.stop(rd)
            station.flush()
    if stopping():
        return
    if plan.units or any(k.startswith(("availability.", "radio_status.")) for k in plan.options):
        try:
            station.reconfigure(cfg)
        except StoreError as exc:
            log.error("reload: %s; the units table is updated at the next reload or restart", exc)
    desk.reconfigure(cfg, plan.units_removed, (*plan.units_added, *plan.units_changed))
    if plan.jurisdictions:
        desk.relocate(loaded.jurisdictions)
    if plan.log_level:
        if log_level_override:
            log.info("reload: [log] level %s not applied: --log-level %s given on the command line", plan.log_level,
                     log_level_override)
        else:
            logging.getLogger().setLevel(plan.log_level.upper())
    for dev in (*plan.start, *plan.restart):
        drivers.start(dev)
