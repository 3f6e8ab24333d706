"""What `alkomctl ports` makes of the scan: each port with its holders, its [[device]] and what may steal it."""

from __future__ import annotations

import os
import pwd
import stat
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alkomd.daemon.config import Config, load
from alkomd.daemon.ctl.ports.scan import (
    Host,
    Scan,
    access_for,
    alkomd_config,
    cmdline,
    file_locks,
    group_name,
    ids_in,
    is_alkomd,
    kernel_driver,
    lock_key,
    mm_ignored_vendors,
    rules,
    scan_processes,
    stable_names,
    system_ports,
    udev_properties,
    unit_active,
    usb_info,
    user_name,
)
from alkomd.daemon.schema import ConfigError

# What brltty's udev rules claim when its rules file cannot be read (CH340, CP210x, FTDI).
BRLTTY_FALLBACK_IDS = frozenset({"1a86:7523", "10c4:ea60", "0403:6001"})
SERVICE_USER = "alkomd"  # systemd/alkomd.sysusers


@dataclass(frozen=True)
class Finding:
    """A problem (`warning`) or a fact worth knowing (`note`), with how to fix it."""

    level: str  # "warning" or "note"
    about: str  # "ModemManager", "brltty", "gpsd", "permissions", "holder", "config"
    text: str
    fix: str = ""


@dataclass(frozen=True)
class Holder:
    """A process that has the port open."""

    pid: int
    name: str
    user: str
    alkomd: bool
    locked: bool = False  # holds the flock alkomd uses for exclusivity
    config: str = ""  # an alkomd holder's --config file
    device: str = ""  # an alkomd holder's [[device]] for this port, when its config says


@dataclass(frozen=True)
class PortInfo:
    """One serial port as a technician needs to see it."""

    path: str
    real: str
    exists: bool
    sources: tuple[str, ...]  # "system" (pyserial's listing), "config", "argument"
    description: str = ""
    usb: str = ""  # "0403:6001"
    serial_number: str = ""
    manufacturer: str = ""
    product: str = ""
    driver: str = ""
    stable: tuple[str, ...] = ()  # /dev/serial/by-id/... and /dev/alkomd-* names
    mode: str = ""
    owner: str = ""
    group: str = ""
    access: bool = False  # this user can read and write it
    holders: tuple[Holder, ...] = ()
    devices: tuple[str, ...] = ()  # [[device]] ids of the given config that use it
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class PortsReport:
    ports: tuple[PortInfo, ...]
    findings: tuple[Finding, ...]
    user: str
    groups: tuple[str, ...]
    complete: bool  # every process's open files could be read (root)
    config: str = ""

    @property
    def problems(self) -> int:
        return sum(f.level == "warning" for f in self.findings) + sum(
            f.level == "warning" for p in self.ports for f in p.findings
        )


@dataclass(frozen=True)
class ConfigPorts:
    """The device-node ports a configuration's [[device]] tables name (pyserial URLs are not ports here)."""

    source: str
    ports: tuple[tuple[str, str], ...] = ()  # (path, device id)
    error: str = ""  # why the file did not validate (then its ports were read from the TOML as written)
    disabled: frozenset[str] = frozenset()  # ids of [[device]] tables with enabled = false: not opened, not a problem

    def by_path(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for path, device in self.ports:
            out.setdefault(path, []).append(device)
        return out


_PORT_KEYS = ("url", "port", "path", "device")


def _port_value(value: object) -> str | None:
    text = str(value) if isinstance(value, str | Path) else ""
    return text if text.startswith("/") and "://" not in text else None


def config_ports(cfg: Config) -> ConfigPorts:
    """The ports of a validated configuration."""
    found = []
    for d in cfg.devices:
        value = next((v for v in (_port_value(getattr(d.options, k, None)) for k in _PORT_KEYS) if v), None)
        if value:
            found.append((value, d.id))
    return ConfigPorts(str(cfg.source), tuple(found), disabled=frozenset(d.id for d in cfg.devices if not d.enabled))


def read_config_ports(path: Path) -> ConfigPorts | None:
    """The ports of a config file; one that does not validate (a password file only the service can
    see, say) is read as plain TOML, with the error kept. None if it cannot be read at all."""
    try:
        return config_ports(load(path))
    except ConfigError as exc:
        error = str(exc)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    tables = raw.get("device", [])
    found = []
    for t in tables if isinstance(tables, list) else []:
        if isinstance(t, dict) and isinstance(t.get("id"), str):
            value = next((v for v in (_port_value(t.get(k)) for k in _PORT_KEYS) if v), None)
            if value:
                found.append((value, t["id"]))
    off = frozenset(t["id"] for t in tables if isinstance(t, dict) and isinstance(t.get("id"), str) and t.get("enabled") is False)
    return ConfigPorts(str(path), tuple(found), error, off)


def _config_devices(config_path: str, cache: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
    """Real port path -> [[device]] ids of a config file (empty if it cannot be read)."""
    if config_path not in cache:
        found = read_config_ports(Path(config_path))
        ports = found.by_path() if found is not None else {}
        cache[config_path] = {os.path.realpath(p): ids for p, ids in ports.items()}
    return cache[config_path]


def collect(
    names: Sequence[str] = (),
    config: ConfigPorts | None = None,
    host: Host | None = None,
    users: Sequence[str] = (),
) -> PortsReport:
    """Look at the ports named (or, if none, every port the system lists plus the config's ones).

    Permissions are checked for this user, the `alkomd` service user if it exists, and `users`.
    """
    host = host or Host()
    wanted: dict[str, list[str]] = {}  # path as named -> sources
    cfg_ports = config.by_path() if config is not None else {}
    if names:
        for n in names:
            wanted.setdefault(n, []).append("argument")
    else:
        for p in system_ports(host):
            wanted.setdefault(p, []).append("system")
        for p in cfg_ports:
            real = os.path.realpath(p)
            same = next((w for w in wanted if os.path.realpath(w) == real), None)
            wanted.setdefault(same or p, []).append("config")
    reals = {n: os.path.realpath(n) for n in wanted}
    scan = scan_processes(set(reals.values()), host.proc)
    locks = file_locks(host.proc)
    cfg_by_real: dict[str, list[str]] = {}
    for p, ids in cfg_ports.items():
        cfg_by_real.setdefault(os.path.realpath(p), []).extend(ids)
    config_cache: dict[str, dict[str, list[str]]] = {}
    me = user_name(os.geteuid())
    ports = [
        _port(name, reals[name], tuple(sources), host, scan, locks, cfg_by_real, config_cache, config is not None, users,
              config.disabled if config is not None else frozenset())
        for name, sources in wanted.items()
    ]
    findings = thieves(host, ports, scan)
    if config is not None and config.error:
        findings.append(Finding("note", "config", f"the configuration does not validate here ({config.error}); "
                                "its [[device]] ports were read from the file as written"))
    if not scan.complete:
        findings.append(
            Finding("note", "holders", "some processes belong to other users: who holds a port may be incomplete",
                    "run as root to see every process: sudo alkomctl ports")
        )
    for user in users:
        try:
            pwd.getpwnam(user)
        except KeyError:
            findings.append(Finding("warning", "permissions", f"there is no user {user!r} on this machine"))
    groups = tuple(sorted({group_name(g) for g in os.getgroups()} | {group_name(os.getegid())}))
    return PortsReport(
        ports=tuple(ports), findings=tuple(findings), user=me, groups=groups, complete=scan.complete,
        config=config.source if config is not None else "",
    )


def _port(
    name: str,
    real: str,
    sources: tuple[str, ...],
    host: Host,
    scan: Scan,
    locks: dict[str, set[int]],
    cfg_by_real: dict[str, list[str]],
    config_cache: dict[str, dict[str, list[str]]],
    have_config: bool,
    users: Sequence[str],
    disabled: frozenset[str] = frozenset(),
) -> PortInfo:
    try:
        st = os.stat(real)
    except OSError:
        ids = cfg_by_real.get(real, [])
        if sources == ("config",) and ids and all(i in disabled for i in ids):  # enabled = false: on purpose
            missing = Finding("note", "config", f"{name} does not exist; [[device]] {', '.join(ids)} has enabled = false: "
                              "alkomd does not open it")
        else:
            missing = Finding("warning", "config" if "config" in sources else "missing",
                              f"{name} does not exist: unplugged, or a wrong path?",
                              "plug the adapter in; `alkomctl ports` lists the ports and their stable /dev/serial/by-id names")
        return PortInfo(name, real, False, sources, devices=tuple(cfg_by_real.get(real, ())), findings=(missing,))
    usb = usb_info(real)
    locked_by = locks.get(lock_key(st), set())
    holders = []
    for pid in scan.open_by.get(real, []):
        argv = cmdline(host.proc, pid)
        pname = scan.names.get(pid, "?")
        daemon = is_alkomd(pname, argv)
        config = device = ""
        if daemon:
            config = alkomd_config(host.proc, pid, argv)
            device = ",".join(_config_devices(config, config_cache).get(real, []))
        try:
            uid = os.stat(host.proc / str(pid)).st_uid
        except OSError:
            uid = -1
        holders.append(Holder(pid, pname, user_name(uid) if uid >= 0 else "?", daemon, pid in locked_by, config, device))
    findings: list[Finding] = []
    for h in holders:
        if not h.alkomd:
            lock = " and locks it" if h.locked else ""
            findings.append(Finding(
                "warning", "holder", f"held by {h.name} (pid {h.pid}, user {h.user}){lock}: alkomd cannot read it at the same time",
                _holder_fix(h.name, h.pid),
            ))
    access = os.access(real, os.R_OK | os.W_OK)
    group = group_name(st.st_gid)
    if not access:
        me = user_name(os.geteuid())
        findings.append(Finding(
            "warning", "permissions", f"permission denied for user {me} (group {group}, mode {stat.filemode(st.st_mode)})",
            f"sudo usermod -aG {group} {me}, then log out and in again" if group != "root" else "ask an administrator for access",
        ))
    if access_for(SERVICE_USER, st) is False:
        findings.append(Finding(
            "warning", "permissions", f"the alkomd service user cannot open it (group {group}, mode {stat.filemode(st.st_mode)})",
            "install systemd/alkomd.sysusers (user alkomd in dialout) and keep GROUP=\"dialout\", MODE=\"0660\" in the udev rule",
        ))
    for user in users:
        if user != SERVICE_USER and access_for(user, st) is False:
            findings.append(Finding(
                "warning", "permissions", f"permission denied for user {user} (group {group}, mode {stat.filemode(st.st_mode)})",
                f"sudo usermod -aG {group} {user}, then log out and in again (a service: restart it)",
            ))
    devices = tuple(cfg_by_real.get(real, ()))
    if have_config and any(h.alkomd for h in holders) and not devices:
        findings.append(Finding("note", "config", "held by alkomd but no [[device]] of the given config names it"))
    return PortInfo(
        path=name, real=real, exists=True, sources=sources,
        description=usb.description, usb=usb.usb, serial_number=usb.serial_number,
        manufacturer=usb.manufacturer, product=usb.product, driver=kernel_driver(real, host.sys),
        stable=stable_names(real, host.dev), mode=stat.filemode(st.st_mode), owner=user_name(st.st_uid), group=group,
        access=access, holders=tuple(holders), devices=devices, findings=tuple(findings),
    )


def _holder_fix(name: str, pid: int) -> str:
    if name == "ModemManager":
        return "keep ModemManager off the adapter: install systemd/99-alkomd.rules (see README), or systemctl disable --now ModemManager"
    if name == "brltty":
        return "sudo apt-get purge brltty (a braille display driver; a station PC does not need it)"
    if name == "gpsd":
        return "sudo systemctl disable --now gpsd.socket gpsd (or USBAUTO=\"false\" in /etc/default/gpsd)"
    if name.startswith("alkomctl") or name.startswith("python"):
        return f"another alkomctl sniff/capture or a script? stop it (kill {pid}) if it is not needed"
    return f"stop that program (kill {pid}) or point it at another port"


def thieves(host: Host, ports: Sequence[PortInfo], scan: Scan) -> list[Finding]:
    """The usual thieves of USB-serial adapters: ModemManager, brltty, gpsd's hotplug."""
    out: list[Finding] = []
    running = {n: sorted(p for p, name in scan.names.items() if name == n) for n in ("ModemManager", "brltty", "gpsd")}
    usb_ports = [p for p in ports if p.exists and p.usb]

    mm = running["ModemManager"]
    if mm:
        vendors, every, files = mm_ignored_vendors(host)
        exposed = [p for p in usb_ports if not every and p.usb.split(":")[0] not in vendors and not _mm_ignored_by_udev(host, p)]
        where = f" (rules: {', '.join(str(f) for f in files)})" if files else " and no udev rule sets ID_MM_DEVICE_IGNORE"
        if exposed or (not files and not every):
            names = ", ".join(p.path for p in exposed) if exposed else "any USB-serial adapter plugged in"
            out.append(Finding(
                "warning", "ModemManager",
                f"ModemManager is running (pid {mm[0]}){where}: it probes {names} with AT commands, garbling the radio's output "
                "and holding the port",
                "sudo cp systemd/99-alkomd.rules /etc/udev/rules.d/ && sudo udevadm control --reload && sudo udevadm trigger "
                "(add the adapter's idVendor if it is not listed); or, with no modem on this PC: sudo systemctl disable --now ModemManager",
            ))
        else:
            out.append(Finding("note", "ModemManager", f"ModemManager is running (pid {mm[0]}); udev keeps it off the adapters{where}"))

    brltty_rules = rules(host, "*brltty*.rules")
    installed = any(p.exists() for p in host.brltty_paths) or bool(brltty_rules)
    if installed or running["brltty"]:
        ids = set().union(*(ids_in(t) for _, t in brltty_rules)) if brltty_rules else set(BRLTTY_FALLBACK_IDS)
        claimed = [p.path for p in usb_ports if p.usb in ids]
        state = f"running (pid {running['brltty'][0]})" if running["brltty"] else "installed"
        what = f"it claims {', '.join(claimed)}" if claimed else "it claims CH340, CP210x and some FTDI adapters when they are plugged in"
        out.append(Finding(
            "warning", "brltty",
            f"brltty (a braille display driver) is {state}: {what}, so the port vanishes or is busy",
            "sudo apt-get purge brltty (then unplug and replug the adapter)",
        ))

    gpsd_rules = rules(host, "*gpsd*.rules")
    if gpsd_rules:
        gpsd_ids = set().union(*(ids_in(t) for _, t in gpsd_rules))
        hit = [p for p in usb_ports if p.usb in gpsd_ids]
        rule_files = ", ".join(str(f) for f, _ in gpsd_rules)
        fix = (
            "sudo systemctl disable --now gpsd.socket gpsd, or USBAUTO=\"false\" in /etc/default/gpsd; "
            "or remove gpsd if nothing uses it: sudo apt-get purge gpsd"
        )
        if hit:
            out.append(Finding(
                "warning", "gpsd",
                f"gpsd's hotplug rule ({rule_files}) hands {', '.join(f'{p.path} ({p.usb})' for p in hit)} to gpsd when plugged in",
                fix,
            ))
        else:
            out.append(Finding(
                "note", "gpsd",
                f"gpsd's hotplug rule is installed ({rule_files}): adapters it lists (e.g. Prolific 067b:2303, CP210x 10c4:ea60) "
                "go to gpsd when plugged in",
                fix,
            ))
    if running["gpsd"]:
        out.append(Finding("note", "gpsd", f"gpsd is running (pid {running['gpsd'][0]}); it opens the ports it is given or hotplugged"))
    if host.use_systemctl and unit_active("gpsd.socket"):
        out.append(Finding(
            "note", "gpsd", "gpsd.socket is active: gpsd starts on demand, with the ports its hotplug rule or /etc/default/gpsd gives it",
            "sudo systemctl disable --now gpsd.socket gpsd if nothing on this PC uses gpsd",
        ))
    return out


def _mm_ignored_by_udev(host: Host, p: PortInfo) -> bool:
    if not host.use_udevadm:
        return False
    return udev_properties(p.real).get("ID_MM_DEVICE_IGNORE") == "1"
