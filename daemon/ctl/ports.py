"""`alkomctl ports`: every serial port, who holds it, and what may steal it (ModemManager, brltty, gpsd, permissions)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.text import Text

from alkomd.daemon.config import DEFAULT_PATH, Config, load
from alkomd.daemon.exit_codes import EX_CONFIG, EX_NOINPUT, EX_OK, EX_PROBLEM
from alkomd.daemon.schema import ConfigError

UDEV_DIRS = (Path("/etc/udev/rules.d"), Path("/run/udev/rules.d"), Path("/usr/lib/udev/rules.d"), Path("/lib/udev/rules.d"))
# USB-serial adapters a station uses (systemd/99-alkomd.rules keeps ModemManager off them).
ADAPTER_VENDORS = {"0403": "FTDI", "067b": "Prolific", "10c4": "Silicon Labs CP210x", "1a86": "WCH CH340"}
# What brltty's udev rules claim when its rules file cannot be read (CH340, CP210x, FTDI).
BRLTTY_FALLBACK_IDS = frozenset({"1a86:7523", "10c4:ea60", "0403:6001"})
ALKOMD_MARKERS = ("alkomd.daemon.main",)
SERVICE_USER = "alkomd"  # systemd/alkomd.sysusers
UDEVADM_TIMEOUT_S = 3.0

_VID_PID = re.compile(r'idVendor\}=="([0-9a-fA-F]{4})".*?idProduct\}=="([0-9a-fA-F]{4})"')
_ENV_PRODUCT = re.compile(r'ENV\{PRODUCT\}=="([0-9a-fA-F]{1,4})/([0-9a-fA-F]{1,4})/')
_VENDOR = re.compile(r'idVendor\}=="([0-9a-fA-F]{4})"')


@dataclass(frozen=True)
class Host:
    """Where the system's files are: the real roots, or a test's stand-ins."""

    dev: Path = Path("/dev")
    sys: Path = Path("/sys")
    proc: Path = Path("/proc")
    udev_dirs: tuple[Path, ...] = UDEV_DIRS
    brltty_paths: tuple[Path, ...] = (Path("/usr/bin/brltty"), Path("/bin/brltty"), Path("/sbin/brltty"), Path("/usr/sbin/brltty"))
    use_udevadm: bool = True
    use_systemctl: bool = True
    use_pyserial_list: bool = True


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


@dataclass
class Scan:
    """One pass over /proc: processes by name, and who has which device open."""

    names: dict[int, str] = field(default_factory=dict)
    open_by: dict[str, list[int]] = field(default_factory=dict)
    complete: bool = True


# --- reading the system --------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def scan_processes(targets: Iterable[str], proc: Path = Path("/proc")) -> Scan:
    """Names of all processes, and the pids that have any of `targets` (real paths) open."""
    wanted = set(targets)
    scan = Scan()
    me = os.getpid()
    try:
        pids = [int(p) for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        scan.complete = False
        return scan
    for pid in pids:
        if pid == me:
            continue
        name = _read(proc / str(pid) / "comm").strip()
        if not name:
            continue
        scan.names[pid] = name
        if not wanted:
            continue
        fd_dir = proc / str(pid) / "fd"
        try:
            fds = os.listdir(fd_dir)
        except PermissionError:
            scan.complete = False
            continue
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if target in wanted:
                pids_of = scan.open_by.setdefault(target, [])
                if pid not in pids_of:
                    pids_of.append(pid)
    return scan


def _locks(proc: Path) -> dict[str, set[int]]:
    """`maj:min:inode` -> pids holding a lock on it (/proc/locks: flock and POSIX locks)."""
    out: dict[str, set[int]] = {}
    for line in _read(proc / "locks").splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:05:87 0 EOF" (a blocked waiter has "->" after the id)
        if len(parts) >= 6 and parts[1] == "->":
            parts = parts[:1] + parts[2:]
        if len(parts) < 6 or not parts[4].isdigit():
            continue
        out.setdefault(parts[5], set()).add(int(parts[4]))
    return out


def _lock_key(st: os.stat_result) -> str:
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _cmdline(proc: Path, pid: int) -> list[str]:
    raw = _read(proc / str(pid) / "cmdline")
    return [a for a in raw.split("\0") if a]


def _alkomd_config(proc: Path, pid: int, argv: Sequence[str]) -> str:
    """The config file an alkomd process was started with (default /etc/alkomd/alkomd.toml).

    Read the way alkomd's argparse reads its options after the program (`alkomd` or `-m alkomd.daemon.main`;
    the interpreter's own `-c` is not ours): `-c FILE`, `-cFILE`, `--config FILE`, `--config=FILE`, and
    the unambiguous abbreviations `--co`, `--con`, ...
    """
    start = next((i + 1 for i, a in enumerate(argv) if os.path.basename(a) == "alkomd" or a in ALKOMD_MARKERS), 0)
    args = argv[start:]
    for i, arg in enumerate(args):
        name, eq, inline = arg.partition("=")
        value = ""
        if arg.startswith("--") and len(name) >= 4 and "--config".startswith(name):
            value = inline if eq else (args[i + 1] if i + 1 < len(args) else "")
        elif arg == "-c" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("-c") and not arg.startswith("--"):
            value = arg[2:]
        if value:
            if not os.path.isabs(value):
                try:
                    value = os.path.join(os.readlink(proc / str(pid) / "cwd"), value)
                except OSError:
                    pass
            return value
    return str(DEFAULT_PATH)


def _is_alkomd(name: str, argv: Sequence[str]) -> bool:
    if name == "alkomd" or (argv and os.path.basename(argv[0]) == "alkomd"):
        return True
    return any(m in a for a in argv for m in ALKOMD_MARKERS)


def _stable_names(real: str, dev: Path) -> tuple[str, ...]:
    """Symlinks that name this port whatever USB socket it is in: by-id and our own udev names."""
    names: list[str] = []
    for folder in (dev / "serial" / "by-id",):
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        names += [str(e) for e in entries if os.path.realpath(e) == real]
    try:
        names += [str(e) for e in sorted(dev.glob("alkomd-*")) if os.path.realpath(e) == real]
    except OSError:
        pass
    return tuple(names)


def _kernel_driver(real: str, sysfs: Path) -> str:
    link = sysfs / "class" / "tty" / os.path.basename(real) / "device" / "driver"
    try:
        return os.path.basename(os.readlink(link))
    except OSError:
        return ""


def _udev_properties(real: str) -> dict[str, str]:
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        return {}
    try:
        r = subprocess.run(
            [udevadm, "info", "--query=property", f"--name={real}"],
            capture_output=True, text=True, timeout=UDEVADM_TIMEOUT_S, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if r.returncode != 0:
        return {}
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def _rules(host: Host, pattern: str) -> list[tuple[Path, str]]:
    """(file, text) of udev rules files matching `pattern`, /etc overriding /lib like udev does."""
    seen: set[str] = set()
    out: list[tuple[Path, str]] = []
    for folder in host.udev_dirs:
        try:
            files = sorted(folder.glob(pattern))
        except OSError:
            continue
        for f in files:
            if f.name in seen:
                continue
            seen.add(f.name)
            text = _read(f)
            if text:
                out.append((f, text))
    return out


def _rule_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _ids_in(text: str) -> set[str]:
    """USB `vid:pid` pairs a rules file matches (ATTRS{idVendor}/{idProduct} or ENV{PRODUCT})."""
    ids: set[str] = set()
    for line in _rule_lines(text):
        ids.update(f"{v.lower()}:{p.lower()}" for v, p in _VID_PID.findall(line))
        ids.update(f"{int(v, 16):04x}:{int(p, 16):04x}" for v, p in _ENV_PRODUCT.findall(line))
    return ids


def mm_ignored_vendors(host: Host) -> tuple[set[str], bool, list[Path]]:
    """Vendors whose ttys udev rules hide from ModemManager; True if a rule hides every tty."""
    vendors: set[str] = set()
    every = False
    files: list[Path] = []
    for f, text in _rules(host, "*.rules"):
        hit = False
        for line in _rule_lines(text):
            if "ID_MM_DEVICE_IGNORE" not in line or "=" not in line.split("ID_MM_DEVICE_IGNORE", 1)[1][:3]:
                continue
            hit = True
            found = _VENDOR.findall(line)
            if found:
                vendors.update(v.lower() for v in found)
            elif 'SUBSYSTEM=="tty"' in line and "ATTRS{" not in line and "KERNEL" not in line:
                every = True
        if hit:
            files.append(f)
    return vendors, every, files


# --- building the report -------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigPorts:
    """The device-node ports a configuration's [[device]] tables name (pyserial URLs are not ports here)."""

    source: str
    ports: tuple[tuple[str, str], ...] = ()  # (path, device id)
    error: str = ""  # why the file did not validate (then its ports were read from the TOML as written)

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
    return ConfigPorts(str(cfg.source), tuple(found))


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
    return ConfigPorts(str(path), tuple(found), error)


def _system_ports(host: Host) -> list[str]:
    if not host.use_pyserial_list:
        return []
    from serial.tools import list_ports

    return [p.device for p in list_ports.comports()]


def _usb_info(real: str) -> dict[str, str]:
    """VID:PID, serial, maker, product, description from pyserial's sysfs reader (empty if not USB)."""
    from serial.tools.list_ports_linux import SysFS

    try:
        info = SysFS(real)
    except (OSError, ValueError, TypeError):
        return {}
    out = {"description": "" if info.description in (None, "n/a") else str(info.description)}
    if info.vid is not None and info.pid is not None:
        out["usb"] = f"{info.vid:04x}:{info.pid:04x}"
    for key in ("serial_number", "manufacturer", "product"):
        value = getattr(info, key, None)
        if value:
            out[key] = str(value)
    return out


def _access_for(user: str, st: os.stat_result) -> bool | None:
    """Whether `user` may read and write a device with this stat (None: no such user)."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    if pw.pw_uid == 0:
        return True
    mode = st.st_mode
    if st.st_uid == pw.pw_uid:
        return bool(mode & stat.S_IRUSR and mode & stat.S_IWUSR)
    groups = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    if st.st_gid in groups:
        return bool(mode & stat.S_IRGRP and mode & stat.S_IWGRP)
    return bool(mode & stat.S_IROTH and mode & stat.S_IWOTH)


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
        for p in _system_ports(host):
            wanted.setdefault(p, []).append("system")
        for p in cfg_ports:
            real = os.path.realpath(p)
            same = next((w for w in wanted if os.path.realpath(w) == real), None)
            wanted.setdefault(same or p, []).append("config")
    reals = {n: os.path.realpath(n) for n in wanted}
    scan = scan_processes(set(reals.values()), host.proc)
    locks = _locks(host.proc)
    cfg_by_real: dict[str, list[str]] = {}
    for p, ids in cfg_ports.items():
        cfg_by_real.setdefault(os.path.realpath(p), []).extend(ids)
    config_cache: dict[str, dict[str, list[str]]] = {}
    me = _user(os.geteuid())
    ports = [
        _port(name, reals[name], tuple(sources), host, scan, locks, cfg_by_real, config_cache, config is not None, users)
        for name, sources in wanted.items()
    ]
    findings = thieves(host, ports, scan)
    if config is not None and config.error:
        findings.append(Finding("note", "config", f"the configuration does not validate here ({config.error}); "
                                "its [[device]] ports were read from the file as written"))  # fmt: skip
    if not scan.complete:
        findings.append(
            Finding("note", "holders", "some processes belong to other users: who holds a port may be incomplete",
                    "run as root to see every process: sudo alkomctl ports")
        )  # fmt: skip
    for user in users:
        try:
            pwd.getpwnam(user)
        except KeyError:
            findings.append(Finding("warning", "permissions", f"there is no user {user!r} on this machine"))
    groups = tuple(sorted({_group(g) for g in os.getgroups()} | {_group(os.getegid())}))
    return PortsReport(
        ports=tuple(ports), findings=tuple(findings), user=me, groups=groups, complete=scan.complete,
        config=config.source if config is not None else "",
    )  # fmt: skip


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
) -> PortInfo:
    try:
        st = os.stat(real)
    except OSError:
        missing = Finding("warning", "config" if "config" in sources else "missing",
                          f"{name} does not exist: unplugged, or a wrong path?",
                          "plug the adapter in; `alkomctl ports` lists the ports and their stable /dev/serial/by-id names")  # fmt: skip
        return PortInfo(name, real, False, sources, devices=tuple(cfg_by_real.get(real, ())), findings=(missing,))
    usb = _usb_info(real)
    locked_by = locks.get(_lock_key(st), set())
    holders = []
    for pid in scan.open_by.get(real, []):
        argv = _cmdline(host.proc, pid)
        pname = scan.names.get(pid, "?")
        is_alkomd = _is_alkomd(pname, argv)
        config = device = ""
        if is_alkomd:
            config = _alkomd_config(host.proc, pid, argv)
            device = ",".join(_config_devices(config, config_cache).get(real, []))
        try:
            uid = os.stat(host.proc / str(pid)).st_uid
        except OSError:
            uid = -1
        holders.append(Holder(pid, pname, _user(uid) if uid >= 0 else "?", is_alkomd, pid in locked_by, config, device))
    findings: list[Finding] = []
    for h in holders:
        if not h.alkomd:
            lock = " and locks it" if h.locked else ""
            findings.append(Finding(
                "warning", "holder", f"held by {h.name} (pid {h.pid}, user {h.user}){lock}: alkomd cannot read it at the same time",
                _holder_fix(h.name, h.pid),
            ))  # fmt: skip
    access = os.access(real, os.R_OK | os.W_OK)
    group = _group(st.st_gid)
    if not access:
        me = _user(os.geteuid())
        findings.append(Finding(
            "warning", "permissions", f"permission denied for user {me} (group {group}, mode {stat.filemode(st.st_mode)})",
            f"sudo usermod -aG {group} {me}, then log out and in again" if group != "root" else "ask an administrator for access",
        ))  # fmt: skip
    if _access_for(SERVICE_USER, st) is False:
        findings.append(Finding(
            "warning", "permissions", f"the alkomd service user cannot open it (group {group}, mode {stat.filemode(st.st_mode)})",
            "install systemd/alkomd.sysusers (user alkomd in dialout) and keep GROUP=\"dialout\", MODE=\"0660\" in the udev rule",
        ))  # fmt: skip
    for user in users:
        if user != SERVICE_USER and _access_for(user, st) is False:
            findings.append(Finding(
                "warning", "permissions", f"permission denied for user {user} (group {group}, mode {stat.filemode(st.st_mode)})",
                f"sudo usermod -aG {group} {user}, then log out and in again (a service: restart it)",
            ))  # fmt: skip
    devices = tuple(cfg_by_real.get(real, ()))
    if have_config and any(h.alkomd for h in holders) and not devices:
        findings.append(Finding("note", "config", "held by alkomd but no [[device]] of the given config names it"))
    return PortInfo(
        path=name, real=real, exists=True, sources=sources,
        description=usb.get("description", ""), usb=usb.get("usb", ""), serial_number=usb.get("serial_number", ""),
        manufacturer=usb.get("manufacturer", ""), product=usb.get("product", ""), driver=_kernel_driver(real, host.sys),
        stable=_stable_names(real, host.dev), mode=stat.filemode(st.st_mode), owner=_user(st.st_uid), group=group,
        access=access, holders=tuple(holders), devices=devices, findings=tuple(findings),
    )  # fmt: skip


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
            ))  # fmt: skip
        else:
            out.append(Finding("note", "ModemManager", f"ModemManager is running (pid {mm[0]}); udev keeps it off the adapters{where}"))

    brltty_rules = _rules(host, "*brltty*.rules")
    installed = any(p.exists() for p in host.brltty_paths) or bool(brltty_rules)
    if installed or running["brltty"]:
        ids = set().union(*(_ids_in(t) for _, t in brltty_rules)) if brltty_rules else set(BRLTTY_FALLBACK_IDS)
        claimed = [p.path for p in usb_ports if p.usb in ids]
        state = f"running (pid {running['brltty'][0]})" if running["brltty"] else "installed"
        what = f"it claims {', '.join(claimed)}" if claimed else "it claims CH340, CP210x and some FTDI adapters when they are plugged in"
        out.append(Finding(
            "warning", "brltty",
            f"brltty (a braille display driver) is {state}: {what}, so the port vanishes or is busy",
            "sudo apt-get purge brltty (then unplug and replug the adapter)",
        ))  # fmt: skip

    gpsd_rules = _rules(host, "*gpsd*.rules")
    if gpsd_rules:
        gpsd_ids = set().union(*(_ids_in(t) for _, t in gpsd_rules))
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
            ))  # fmt: skip
        else:
            out.append(Finding(
                "note", "gpsd",
                f"gpsd's hotplug rule is installed ({rule_files}): adapters it lists (e.g. Prolific 067b:2303, CP210x 10c4:ea60) "
                "go to gpsd when plugged in",
                fix,
            ))  # fmt: skip
    if running["gpsd"]:
        out.append(Finding("note", "gpsd", f"gpsd is running (pid {running['gpsd'][0]}); it opens the ports it is given or hotplugged"))
    if host.use_systemctl and _unit_active("gpsd.socket"):
        out.append(Finding(
            "note", "gpsd", "gpsd.socket is active: gpsd starts on demand, with the ports its hotplug rule or /etc/default/gpsd gives it",
            "sudo systemctl disable --now gpsd.socket gpsd if nothing on this PC uses gpsd",
        ))  # fmt: skip
    return out


def _unit_active(unit: str) -> bool:
    """Whether systemd says the unit is active (False without systemd)."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return False
    try:
        r = subprocess.run([systemctl, "is-active", "--quiet", unit], capture_output=True, timeout=UDEVADM_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def _mm_ignored_by_udev(host: Host, p: PortInfo) -> bool:
    if not host.use_udevadm:
        return False
    return _udev_properties(p.real).get("ID_MM_DEVICE_IGNORE") == "1"


# --- output --------------------------------------------------------------------------------------


def report_dict(r: PortsReport) -> dict[str, object]:
    d = asdict(r)
    d["problems"] = r.problems
    return d


def render(r: PortsReport, console: Console) -> None:
    pr = console.print
    who = f"user {r.user} (groups {', '.join(r.groups)})"
    head = Text(f"Serial ports: {len(r.ports)}", style="bold")
    head.append(f"   {who}", style="dim")
    if r.config:
        head.append(f"   config {r.config}", style="dim")
    pr(head)
    if not r.ports:
        pr(Text("no serial port found: is the adapter plugged in? (dmesg | tail shows what the kernel saw)", style="yellow"))
    for p in r.ports:
        pr()
        line = Text(p.path, style="bold")
        if p.real != p.path:
            line.append(f" -> {p.real}")
        if not p.exists:
            line.append("  missing", style="red")
        elif p.description:
            line.append(f"  {p.description}")
        pr(line)
        rows: list[tuple[str, str]] = []
        if p.usb:
            usb = f"USB {p.usb}"
            vendor = ADAPTER_VENDORS.get(p.usb.split(":")[0])
            usb += f" ({vendor})" if vendor else ""
            if p.manufacturer or p.product:
                usb += f"  {p.manufacturer} {p.product}".rstrip()
            rows.append(("adapter", usb))
            rows.append(("serial no", p.serial_number or "- (no serial number: tell identical adapters apart by USB socket)"))
        if p.driver:
            rows.append(("driver", p.driver))
        if p.exists:
            rows.append(("stable name", "\n".join(p.stable) if p.stable else "- (no /dev/serial/by-id name: not a USB adapter?)"))
            you = "you can read and write it" if p.access else "you CANNOT open it"
            rows.append(("access", f"{p.mode} {p.owner}:{p.group}  ({you})"))
            if p.holders:
                held = []
                for h in p.holders:
                    s = f"{h.name} pid {h.pid} user {h.user}" + (" (locked)" if h.locked else "")
                    if h.alkomd:
                        s += f"  the alkomd daemon, [[device]] {h.device}" if h.device else "  the alkomd daemon"
                    held.append(s)
                rows.append(("held by", "\n".join(held)))
            else:
                rows.append(("held by", "nobody" + ("" if r.complete else " that this user can see")))
        if p.devices:
            rows.append(("config", ", ".join(f"[[device]] {d}" for d in p.devices)))
        rows.append(("listed from", ", ".join(p.sources)))
        for k, v in rows:
            first, *rest = v.split("\n")
            pr(Text(f"    {k:<12}{first}"))
            for more in rest:
                pr(Text(f"    {'':<12}{more}"))
        for f in p.findings:
            _finding(console, f, indent="    ")
    if r.findings:
        pr()
        pr(Text("System", style="bold"))
        for f in r.findings:
            _finding(console, f, indent="  ")
    pr()
    if r.problems:
        pr(Text(f"{r.problems} problem(s) found", style="bold red"))
    else:
        pr(Text("no problem found", style="green"))


def _finding(console: Console, f: Finding, indent: str) -> None:
    t = Text(indent)
    t.append("WARNING " if f.level == "warning" else "note    ", style="bold red" if f.level == "warning" else "cyan")
    t.append(f.text)
    console.print(t)
    if f.fix:
        console.print(Text(f"{indent}        fix: {f.fix}", style="dim" if f.level == "note" else ""))


def run(
    names: Sequence[str],
    config: Path | None,
    as_json: bool,
    users: Sequence[str] = (),
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """`alkomctl ports`: exit 0 no problem, 1 problems found, 66 a named port does not exist, 78 --config unreadable."""
    found: ConfigPorts | None = None
    path = config if config is not None else (DEFAULT_PATH if os.path.exists(DEFAULT_PATH) else None)  # False in a folder we may not enter
    if path is not None:
        found = read_config_ports(path)
        if found is None and config is not None:
            print(f"alkomctl ports: cannot read {config} (missing, unreadable or not TOML)", file=err)
            return EX_CONFIG
    report = collect(names, found, users=users)
    if as_json:
        out.write(json.dumps(report_dict(report), indent=2) + "\n")
    else:
        render(report, Console(file=out, highlight=False, soft_wrap=True, markup=False))
    if names and any(not p.exists for p in report.ports):
        return EX_NOINPUT
    return EX_PROBLEM if report.problems else EX_OK
