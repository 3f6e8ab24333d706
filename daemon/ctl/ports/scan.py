"""What `alkomctl ports` reads from the system: /proc (processes, open files, locks), sysfs, udev rules, users."""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alkomd.daemon.ctl.common import DEFAULT_PATH

UDEV_DIRS = (Path("/etc/udev/rules.d"), Path("/run/udev/rules.d"), Path("/usr/lib/udev/rules.d"), Path("/lib/udev/rules.d"))
ALKOMD_MARKERS = ("alkomd.daemon.main",)
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
class Scan:
    """One pass over /proc: processes by name, and who has which device open."""

    names: dict[int, str] = field(default_factory=dict)
    open_by: dict[str, list[int]] = field(default_factory=dict)
    complete: bool = True  # every process's open files could be read (root)


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def scan_processes(targets: Iterable[str], proc: Path = Path("/proc")) -> Scan:
    """Names of all processes, and the pids that have any of `targets` (real paths) open."""
    wanted = set(targets)
    names: dict[int, str] = {}
    open_by: dict[str, list[int]] = {}
    complete = True
    me = os.getpid()
    try:
        pids = [int(p) for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return Scan(complete=False)
    for pid in pids:
        if pid == me:
            continue
        name = read_text(proc / str(pid) / "comm").strip()
        if not name:
            continue
        names[pid] = name
        if not wanted:
            continue
        fd_dir = proc / str(pid) / "fd"
        try:
            fds = os.listdir(fd_dir)
        except PermissionError:
            complete = False
            continue
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if target in wanted:
                pids_of = open_by.setdefault(target, [])
                if pid not in pids_of:
                    pids_of.append(pid)
    return Scan(names, open_by, complete)


def file_locks(proc: Path) -> dict[str, set[int]]:
    """`maj:min:inode` -> pids holding a lock on it (/proc/locks: flock and POSIX locks)."""
    out: dict[str, set[int]] = {}
    for line in read_text(proc / "locks").splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:05:87 0 EOF" (a blocked waiter has "->" after the id)
        if len(parts) >= 6 and parts[1] == "->":
            parts = parts[:1] + parts[2:]
        if len(parts) < 6 or not parts[4].isdigit():
            continue
        out.setdefault(parts[5], set()).add(int(parts[4]))
    return out


def lock_key(st: os.stat_result) -> str:
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def cmdline(proc: Path, pid: int) -> list[str]:
    raw = read_text(proc / str(pid) / "cmdline")
    return [a for a in raw.split("\0") if a]


def alkomd_config(proc: Path, pid: int, argv: Sequence[str]) -> str:
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


def is_alkomd(name: str, argv: Sequence[str]) -> bool:
    if name == "alkomd" or (argv and os.path.basename(argv[0]) == "alkomd"):
        return True
    return any(m in a for a in argv for m in ALKOMD_MARKERS)


def stable_names(real: str, dev: Path) -> tuple[str, ...]:
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


def kernel_driver(real: str, sysfs: Path) -> str:
    link = sysfs / "class" / "tty" / os.path.basename(real) / "device" / "driver"
    try:
        return os.path.basename(os.readlink(link))
    except OSError:
        return ""


def udev_properties(real: str) -> dict[str, str]:
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        return {}
    try:
        r = subprocess.run(
            [udevadm, "info", "--query=property", f"--name={real}"],
            capture_output=True, text=True, timeout=UDEVADM_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if r.returncode != 0:
        return {}
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def rules(host: Host, pattern: str) -> list[tuple[Path, str]]:
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
            text = read_text(f)
            if text:
                out.append((f, text))
    return out


def rule_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def ids_in(text: str) -> set[str]:
    """USB `vid:pid` pairs a rules file matches (ATTRS{idVendor}/{idProduct} or ENV{PRODUCT})."""
    ids: set[str] = set()
    for line in rule_lines(text):
        ids.update(f"{v.lower()}:{p.lower()}" for v, p in _VID_PID.findall(line))
        ids.update(f"{int(v, 16):04x}:{int(p, 16):04x}" for v, p in _ENV_PRODUCT.findall(line))
    return ids


def mm_ignored_vendors(host: Host) -> tuple[set[str], bool, list[Path]]:
    """Vendors whose ttys udev rules hide from ModemManager; True if a rule hides every tty."""
    vendors: set[str] = set()
    every = False
    files: list[Path] = []
    for f, text in rules(host, "*.rules"):
        hit = False
        for line in rule_lines(text):
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


def system_ports(host: Host) -> list[str]:
    if not host.use_pyserial_list:
        return []
    from serial.tools import list_ports

    return [p.device for p in list_ports.comports()]


@dataclass(frozen=True)
class UsbInfo:
    """What pyserial's sysfs reader says about a USB-serial adapter (all empty if it is not USB)."""

    description: str = ""
    usb: str = ""  # "0403:6001"
    serial_number: str = ""
    manufacturer: str = ""
    product: str = ""


def usb_info(real: str) -> UsbInfo:
    """VID:PID, serial, maker, product, description from pyserial's sysfs reader (empty if not USB)."""
    from serial.tools.list_ports_linux import SysFS

    try:
        info = SysFS(real)
    except (OSError, ValueError, TypeError):
        return UsbInfo()

    def text(value: object) -> str:
        return str(value) if value else ""

    return UsbInfo(
        description="" if info.description in (None, "n/a") else str(info.description),
        usb=f"{info.vid:04x}:{info.pid:04x}" if info.vid is not None and info.pid is not None else "",
        serial_number=text(getattr(info, "serial_number", None)),
        manufacturer=text(getattr(info, "manufacturer", None)),
        product=text(getattr(info, "product", None)),
    )


def access_for(user: str, st: os.stat_result) -> bool | None:
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


def unit_active(unit: str) -> bool:
    """Whether systemd says the unit is active (False without systemd)."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return False
    try:
        r = subprocess.run([systemctl, "is-active", "--quiet", unit], capture_output=True, timeout=UDEVADM_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0
