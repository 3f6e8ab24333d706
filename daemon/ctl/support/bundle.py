"""What goes into `alkomctl support-bundle`'s tar.gz: versions, ports, config without secrets, counters, recent errors.

What never goes in: the contents of password, key or certificate files (the configuration names
them by path only), keys whose name says secret, call records and their payloads, unit
positions, and phone numbers in log lines (replaced by `<number>`). The daemon's counters come
from its control socket when it answers, else from its database opened read-only (outbox depth,
the last device status of each device, unit statuses), never from the calls or audit tables.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import io
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from alkomd.daemon import __version__, control
from alkomd.daemon.config import DEFAULT_PATH, Config, StoreConfig, load
from alkomd.daemon.ctl.common import store_path as config_store_path
from alkomd.daemon.ctl.ports.report import collect as collect_ports
from alkomd.daemon.ctl.ports.report import config_ports, read_config_ports
from alkomd.daemon.ctl.ports.scan import UDEV_DIRS
from alkomd.daemon.ctl.ports.view import render as render_ports
from alkomd.daemon.ctl.ports.view import report_dict as ports_dict
from alkomd.daemon.exit_codes import EX_CANTCREAT, EX_OK
from alkomd.daemon.schema import ConfigError
from alkomd.daemon.store import readonly

LIBRARIES = ("pyserial", "pynmea2", "paho-mqtt", "sqlite-utils", "shapely", "numpy", "rich", "pymodbus", "amqtt")
SECRET_NAME = re.compile(r"(password|passwd|secret|token|psk|api_?key|private|credential)", re.I)
PATH_NAME = re.compile(r"(_file|_path|_dir)$")
# A phone number: + or 0 or 62 first, 9 to 15 digits, single spaces or dashes between groups;
# not inside a word, a hex id or a longer number. Dates (2024-05-14) and times do not start so.
PHONE = re.compile(r"(?<![\w+.-])(?:\+\d|0\d|62)(?:[ -]?\d){7,13}(?![\w.-]*\d)")
LOG_LEVELS = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")
EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception|Exit|Interrupt)\b")
JOURNAL_LINES = 500
LOG_LINES = 500
COMMAND_TIMEOUT_S = 10.0
STATUS_TIMEOUT_S = 5.0


def scrub(text: str) -> str:
    """Replace phone numbers (callers) with <number>."""
    return PHONE.sub("<number>", text)


def redact(value: Any, key: str = "") -> Any:
    """A configuration value with secrets removed: keys named like a secret become <redacted> (paths stay)."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key) for v in value]
    if key and SECRET_NAME.search(key) and not PATH_NAME.search(key) and value not in (None, ""):
        return "<redacted>"
    if isinstance(value, Path):
        return str(value)
    return value


def effective_config(cfg: Config) -> dict[str, Any]:
    """The validated configuration with every default filled in, as JSON values, secrets redacted."""
    data = dataclasses.asdict(cfg)
    out: dict[str, Any] = redact(json.loads(json.dumps(data, default=str)))
    return out


def raw_config(path: Path) -> dict[str, Any]:
    """The file as written (when it does not validate), secrets redacted."""
    with path.open("rb") as fh:
        out: dict[str, Any] = redact(tomllib.load(fh))
    return out


def _run(cmd: list[str]) -> tuple[int, str]:
    exe = shutil.which(cmd[0]) or next((p for p in (f"/usr/sbin/{cmd[0]}", f"/sbin/{cmd[0]}") if os.path.exists(p)), None)
    if exe is None:
        return 127, ""
    try:
        r = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 126, str(exc)
    return r.returncode, (r.stdout + r.stderr).strip()


def versions() -> dict[str, Any]:
    libs: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            libs[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            libs[name] = None
    _, mosquitto = _run(["mosquitto", "-h"])
    os_release = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                os_release[k] = v.strip('"')
    except OSError:
        pass
    u = platform.uname()
    return {
        "alkomd": __version__,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "sqlite": sqlite3.sqlite_version,
        "libraries": libs,
        "mosquitto": mosquitto.splitlines()[0] if mosquitto else None,
        "os": os_release.get("PRETTY_NAME", ""),
        "kernel": f"{u.system} {u.release} {u.machine}",
    }


def daemon_status(store_path: Path, socket_path: Path | None) -> tuple[str, dict[str, Any]]:
    """('control socket', replies) from the running daemon, or ('', {'error': ...}) if none answers."""
    paths = [socket_path] if socket_path else [control.socket_path(store_path, env={}), control.SYSTEMD_SOCKET]
    errors = []
    for path in dict.fromkeys(paths):
        try:
            status = control.request(path, "status", STATUS_TIMEOUT_S)
            devices = control.request(path, "devices", STATUS_TIMEOUT_S)
            units = control.request(path, "units", STATUS_TIMEOUT_S)
        except (control.ControlError, control.ReplyError, OSError, ValueError) as exc:
            errors.append(f"{path}: {exc}")
            continue
        if isinstance(units, list):  # where a unit is, is not the maintainers' business
            units = [{k: v for k, v in u.items() if k not in ("lat", "lon")} for u in units if isinstance(u, dict)]
        return f"control socket {path}", {"status": status, "devices": devices, "units": units}
    return "", {"error": "; ".join(errors)}


def database_status(db: Path) -> dict[str, Any]:
    """Counters from the database, opened read-only: outbox, last device status per device, unit statuses."""
    try:
        con = readonly.connect(db)
    except sqlite3.Error as exc:
        return {"error": f"{db}: {exc}"}
    try:
        out: dict[str, Any] = {"database": str(db), "size_bytes": db.stat().st_size}
        out["schema_version"] = readonly.schema_version(con)
        out["outbox_unsent"] = readonly.unsent_by_kind(con)
        out["outbox_depth"] = sum(out["outbox_unsent"].values())
        out["oldest_unsent"] = readonly.oldest_unsent(con)
        devices = []
        for payload in readonly.last_device_statuses(con):
            try:
                d = json.loads(payload)
            except ValueError:
                continue
            keep = ("device", "driver", "state", "since", "detail", "counters", "modem")
            devices.append({k: d.get(k) for k in keep if k in d})
        out["devices"] = sorted(devices, key=lambda d: str(d.get("device")))
        out["devices_note"] = "each device's last published status: its counters are as of its last state change"
        rows = readonly.units(con)
        if rows is not None:
            out["units"] = rows
        if "calls" in readonly.tables(con):
            out["open_calls"] = readonly.count_calls(con, only_open=True)  # a count, never their content
        return out
    except (sqlite3.Error, OSError) as exc:
        return {"error": f"{db}: {exc}"}
    finally:
        con.close()


def journal() -> str:
    """Recent warnings and errors of the alkomd unit, or '' when there is no journal for it."""
    code, text = _run(["journalctl", "-u", "alkomd", "--no-pager", "-o", "short-iso", "-p", "warning", "-n", str(JOURNAL_LINES)])
    if code != 0 or not text or "No entries" in text or "No journal files" in text:
        return ""
    return text


def log_errors(path: Path) -> str:
    """Warnings and errors (with their tracebacks) from the end of a log file."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4 * 1024 * 1024))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}\n"
    keep: list[str] = []
    in_traceback = False
    for line in lines:
        if LOG_LEVELS.search(line):
            keep.append(line)
            in_traceback = False
        elif line.startswith("Traceback"):
            keep.append(line)
            in_traceback = True
        elif in_traceback and line[:1] in (" ", "\t"):
            keep.append(line)
        elif in_traceback and EXCEPTION_LINE.match(line):
            keep.append(line)  # the exception itself ends the traceback
            in_traceback = False
        else:
            in_traceback = False
    return "\n".join(keep[-LOG_LINES:]) + "\n"


def _text(console_render: Callable[[Console], None]) -> str:
    buf = io.StringIO()
    console_render(Console(file=buf, width=140, highlight=False, soft_wrap=True, color_system=None, markup=False))
    return buf.getvalue()


def collect(config: Path | None, log: Path | None = None, socket_path: Path | None = None) -> dict[str, bytes]:
    """The bundle's members: name -> bytes (every text member scrubbed of phone numbers)."""
    files: dict[str, str] = {}
    notes: list[str] = []
    files["versions.json"] = json.dumps(versions(), indent=2)

    cfg: Config | None = None
    cfg_path = config if config is not None else DEFAULT_PATH
    store_path: Path | None = None
    try:
        cfg = load(cfg_path)
        files["config.json"] = json.dumps(effective_config(cfg), indent=2)
        store_path = cfg.store.path
        notes.append(f"config.json: {cfg_path}, validated, every default filled in, secrets as paths only")
    except ConfigError as exc:
        files["config-error.txt"] = f"{exc}\n"
        notes.append(f"config-error.txt: {cfg_path} does not validate")
        try:
            raw = raw_config(cfg_path)
            files["config-raw.json"] = json.dumps(raw, indent=2, default=str)
            store_path = config_store_path(cfg_path)
            notes.append("config-raw.json: the file as written (not validated), secrets redacted")
        except (OSError, tomllib.TOMLDecodeError):
            pass

    report = collect_ports([], config_ports(cfg) if cfg is not None else read_config_ports(cfg_path))
    files["ports.txt"] = _text(lambda c: render_ports(report, c))
    files["ports.json"] = json.dumps(ports_dict(report), indent=2)

    where, status = daemon_status(store_path or StoreConfig().path, socket_path)
    if where:
        files["status.json"] = json.dumps({"source": where, **status}, indent=2)
        notes.append(f"status.json: the running daemon ({where}); units without their positions")
    else:
        notes.append(f"no daemon answered on its control socket ({status.get('error', '')})")
        if store_path is not None and os.path.isdir(store_path.parent) and not os.access(store_path.parent, os.X_OK):
            notes.append(f"no database.json: {store_path.parent} may not be entered by this user (run as root)")
        elif store_path is not None and store_path.exists():
            files["database.json"] = json.dumps(database_status(store_path), indent=2)
            notes.append(f"database.json: counters read from {store_path} (read-only): outbox, device status, unit statuses")

    j = journal()
    if j:
        files["journal.txt"] = j + "\n"
        notes.append("journal.txt: warnings and errors of the alkomd unit (journalctl -u alkomd -p warning)")
    if log is not None:
        files["log.txt"] = log_errors(log)
        notes.append(f"log.txt: warnings, errors and tracebacks from the end of {log}")
    if not j and log is None:
        notes.append("no journal for the alkomd unit and no --log FILE: no log in this bundle")

    code, text = _run(["systemctl", "status", "alkomd", "--no-pager", "--lines=0"])
    if code != 127 and text:
        files["systemd.txt"] = text + "\n"
    rules = list(dict.fromkeys(p.resolve() for d in UDEV_DIRS if d.is_dir() for p in sorted(d.glob("*.rules"))))
    udev = ["installed udev rules:"] + [f"  {p}" for p in rules]
    for p in rules:
        if "alkomd" in p.name:
            try:
                udev += ["", f"--- {p}", p.read_text(errors="replace")]
            except OSError as exc:
                udev += ["", f"--- {p}: cannot read: {exc.strerror or exc}"]
    files["udev.txt"] = "\n".join(udev) + "\n"

    readme = [
        f"alkomd support bundle, made {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC on {socket.gethostname()} "
        f"by alkomctl {__version__}",
        "",
        "Inside:",
        *(f"  {n}" for n in notes),
        "  versions.json: alkomd, Python, libraries, SQLite, mosquitto, OS",
        "  ports.txt, ports.json: `alkomctl ports` (serial ports, holders, ModemManager/brltty/gpsd, permissions)",
        "  udev.txt: installed udev rules (names), and alkomd's own rules",
        "",
        "Never inside: the contents of password, key or certificate files (paths only), values of keys named like a",
        "secret, call records or payloads, caller numbers (log lines: <number>), unit positions, the database itself.",
    ]
    files["README.txt"] = "\n".join(readme) + "\n"
    return {name: scrub(text).encode("utf-8") for name, text in files.items()}


def write_bundle(out: Path, members: dict[str, bytes]) -> str:
    """Write the tar.gz atomically (temp file, then rename); returns the folder name inside."""
    folder = f"alkomd-support-{socket.gethostname()}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    fd, tmp = tempfile.mkstemp(prefix=".support-", suffix=".tar.gz", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w:gz") as tar:
            now = time.time()
            for name in sorted(members, key=lambda n: (n != "README.txt", n)):
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size = len(members[name])
                info.mtime = int(now)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(members[name]))
        os.chmod(tmp, 0o600)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder


def bundle_cmd(
    out_path: Path,
    config: Path | None,
    log: Path | None = None,
    socket_path: Path | None = None,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """`alkomctl support-bundle`: 0 written, 73 cannot create OUT."""
    if not out_path.parent.is_dir():
        print(f"alkomctl support-bundle: cannot create {out_path}: no folder {out_path.parent}", file=err)
        return EX_CANTCREAT
    members = collect(config, log, socket_path)
    try:
        folder = write_bundle(out_path, members)
    except OSError as exc:
        print(f"alkomctl support-bundle: cannot create {out_path}: {exc.strerror or exc}", file=err)
        return EX_CANTCREAT
    size = out_path.stat().st_size
    if as_json:
        out.write(json.dumps({"file": str(out_path), "bytes": size, "folder": folder, "members": sorted(members)}) + "\n")
        return EX_OK
    console = Console(file=out, highlight=False, soft_wrap=True, markup=False)
    console.print(Text(f"wrote {out_path} ({size} bytes)", style="bold green"))
    for name in sorted(members, key=lambda n: (n != "README.txt", n)):
        console.print(Text(f"  {folder}/{name}  ({len(members[name])} bytes)"))
    console.print(Text("It holds no password, key, call or caller number; read README.txt inside before sending it.", style="dim"))
    return EX_OK
