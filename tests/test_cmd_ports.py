"""`alkomctl ports` on real ptys held by real processes: holders, locks, the daemon's own ports, thieves, permissions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Daemon, Station, wait_until

from alkomd.daemon.ctl.ports import report as cmd_ports
from alkomd.daemon.ctl.ports import view as ports_view
from alkomd.daemon.ctl.ports.report import PortInfo, thieves
from alkomd.daemon.ctl.ports.scan import Host, Scan, scan_processes
from alkomd.drivers.simulator import PtyGps

ROOT = Path(__file__).resolve().parents[1]

# A process that renames itself (prctl PR_SET_NAME, what /proc/<pid>/comm shows) and holds a port
# open the way the daemon does (open_port: flock) or plainly.
HOLDER = """
import ctypes, sys, time
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
if sys.argv[2]:
    from alkomd.drivers.nmea_serial import open_port
    port = open_port(sys.argv[2], 9600, "8N1", exclusive=sys.argv[3] == "lock")
print("ready", flush=True)
time.sleep(120)
"""


class Holders:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, name: str, port: Path | str = "", lock: bool = True) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            [sys.executable, "-c", HOLDER, name, str(port), "lock" if lock else "plain"], stdout=subprocess.PIPE, text=True
        )
        self.procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        return p

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(10)


@pytest.fixture
def holders() -> Iterator[Holders]:
    h = Holders()
    yield h
    h.close()


def alkomctl(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", *args], capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload, no-any-return]


def ports_json(*args: str) -> tuple[int, dict[str, object]]:
    r = alkomctl("ports", "--json", *args)
    return r.returncode, json.loads(r.stdout)


def test_a_port_held_and_locked_by_another_program_is_a_problem(tmp_path: Path, holders: Holders) -> None:
    with PtyGps(tmp_path / "ttyRADIO") as pty:
        code, clean = ports_json(str(pty.link))
        assert code == 0, clean
        [port] = clean["ports"]  # type: ignore[misc]
        assert port["exists"] and port["real"] == pty.slave_name and port["holders"] == [] and port["findings"] == []

        p = holders.start("radio-logger", pty.link, lock=True)
        code, report = ports_json(str(pty.link))
        [port] = report["ports"]  # type: ignore[misc]
        [holder] = port["holders"]
        assert holder["pid"] == p.pid and holder["name"] == "radio-logger" and holder["locked"] and not holder["alkomd"]
        assert code == 1
        assert any(f["about"] == "holder" and "radio-logger" in f["text"] and f"kill {p.pid}" in f["fix"] for f in port["findings"])

        human = alkomctl("ports", str(pty.link))
        assert human.returncode == 1
        assert f"radio-logger pid {p.pid}" in human.stdout and "(locked)" in human.stdout and "WARNING" in human.stdout


def test_a_port_that_does_not_exist_is_exit_66(tmp_path: Path) -> None:
    r = alkomctl("ports", str(tmp_path / "ttyUSB9"))
    assert r.returncode == 66
    assert "does not exist" in r.stdout


def test_the_daemon_holding_its_ports_is_named_with_each_device(
    station: Station, ptys: Callable[[Path], PtyGps], daemons: Callable[[Path], Daemon], holders: Holders
) -> None:
    station.write_config(devices=2)
    pts = [ptys(link) for link in station.links]
    daemon = daemons(station.config)
    assert daemon.proc is not None
    pid = daemon.proc.pid

    def held() -> dict[str, list[dict[str, object]]]:
        _, report = ports_json("--config", str(station.config))
        return {p["path"]: p["holders"] for p in report["ports"]}  # type: ignore[attr-defined, index]

    wait_until(lambda: all(held().get(str(link)) for link in station.links), 15, "the daemon holding both ports")
    _, report = ports_json("--config", str(station.config))
    ports = {p["path"]: p for p in report["ports"]}  # type: ignore[attr-defined, index]
    for i, pty in enumerate(pts):
        port = ports[str(pty.link)]
        assert "config" in port["sources"] and port["devices"] == [f"gps{i}"]
        [h] = port["holders"]
        assert h["pid"] == pid and h["alkomd"] and h["locked"] and h["device"] == f"gps{i}"
        assert h["config"] == str(station.config)
        assert not [f for f in port["findings"] if f["level"] == "warning"]  # the daemon is the rightful holder

    # Without --config, the daemon's own --config (from its command line) still names the device.
    _, report = ports_json(str(pts[1].link))
    [port] = report["ports"]  # type: ignore[misc]
    assert port["holders"][0]["device"] == "gps1"
    human = alkomctl("ports", "--config", str(station.config))
    assert f"pid {pid}" in human.stdout and "the alkomd daemon, [[device]] gps0" in human.stdout


def test_a_daemon_started_with_a_short_relative_config_option_is_named_too(
    station: Station, ptys: Callable[[Path], PtyGps]
) -> None:
    """`alkomd -c alkomd.toml` in its folder: the config is found from the daemon's command line and its cwd."""
    station.write_config()
    pty = ptys(station.links[0])
    proc = subprocess.Popen([sys.executable, "-m", "alkomd.daemon.main", "-c", station.config.name], cwd=station.dir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def holder() -> dict[str, object] | None:
            _, report = ports_json(str(pty.link))
            holders = report["ports"][0]["holders"]  # type: ignore[index]
            return holders[0] if holders else None  # type: ignore[no-any-return]

        wait_until(lambda: holder() is not None, 20, "the daemon holding its port")
        h = holder()
        assert h is not None and h["pid"] == proc.pid and h["alkomd"]
        assert h["config"] == str(station.config) and h["device"] == "gps0"
    finally:
        proc.terminate()
        proc.wait(10)


def test_process_scan_finds_holders_by_real_path(tmp_path: Path, holders: Holders) -> None:
    with PtyGps(tmp_path / "a") as a, PtyGps(tmp_path / "b") as b:
        p = holders.start("holder-a", a.link, lock=False)
        scan = scan_processes({a.slave_name, b.slave_name})
        assert scan.open_by.get(a.slave_name) == [p.pid]
        assert b.slave_name not in scan.open_by
        assert scan.names[p.pid] == "holder-a"


def _usb(path: str, usb: str) -> PortInfo:
    return PortInfo(path=path, real=path, exists=True, sources=("system",), usb=usb)


def _host(tmp_path: Path, rules: dict[str, str], brltty: bool = False) -> Host:
    udev = tmp_path / "rules.d"
    udev.mkdir(parents=True, exist_ok=True)
    for name, text in rules.items():
        (udev / name).write_text(text)
    binary = tmp_path / "bin" / "brltty"
    if brltty:
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_text("#!/bin/sh\n")
    return Host(udev_dirs=(udev,), brltty_paths=(binary,), use_udevadm=False, use_systemctl=False)


def _scan_running(*names: str) -> Scan:
    return Scan(names={1000 + i: n for i, n in enumerate(names)})


def test_modemmanager_is_a_problem_until_udev_keeps_it_off_the_adapter(tmp_path: Path, holders: Holders) -> None:
    mm = holders.start("ModemManager")
    scan = scan_processes(())
    assert scan.names[mm.pid] == "ModemManager"
    ftdi, odd = _usb("/dev/ttyUSB0", "0403:6001"), _usb("/dev/ttyACM0", "2c7c:0125")

    bare = [f for f in thieves(_host(tmp_path / "bare", {}), [ftdi], scan) if f.about == "ModemManager"]
    assert [f.level for f in bare] == ["warning"]
    assert "/dev/ttyUSB0" in bare[0].text and "99-alkomd.rules" in bare[0].fix

    shipped = {"99-alkomd.rules": (ROOT / "systemd" / "99-alkomd.rules").read_text()}
    kept_off = [f for f in thieves(_host(tmp_path / "shipped", shipped), [ftdi], scan) if f.about == "ModemManager"]
    assert [f.level for f in kept_off] == ["note"]
    exposed = [f for f in thieves(_host(tmp_path / "shipped2", shipped), [ftdi, odd], scan) if f.about == "ModemManager"]
    assert [f.level for f in exposed] == ["warning"] and "/dev/ttyACM0" in exposed[0].text and "/dev/ttyUSB0" not in exposed[0].text

    quiet = [f for f in thieves(_host(tmp_path / "none", {}), [ftdi], _scan_running("bash")) if f.about == "ModemManager"]
    assert quiet == []


def test_brltty_installed_is_a_problem_and_its_rules_name_the_adapters(tmp_path: Path) -> None:
    ch340, ftdi = _usb("/dev/ttyUSB0", "1a86:7523"), _usb("/dev/ttyUSB1", "0403:6015")
    assert [f for f in thieves(_host(tmp_path / "no", {}), [ch340], _scan_running()) if f.about == "brltty"] == []
    rules = {"85-brltty.rules": 'ENV{PRODUCT}=="1a86/7523/*", ENV{BRLTTY_BRAILLE_DRIVER}="bm", GOTO="brltty_usb_run"\n'}
    [f] = [f for f in thieves(_host(tmp_path / "yes", rules, brltty=True), [ch340, ftdi], _scan_running()) if f.about == "brltty"]
    assert f.level == "warning" and "/dev/ttyUSB0" in f.text and "/dev/ttyUSB1" not in f.text and "purge brltty" in f.fix
    [f] = [f for f in thieves(_host(tmp_path / "bin", {}, brltty=True), [ftdi], _scan_running("brltty")) if f.about == "brltty"]
    assert f.level == "warning" and "running" in f.text


def test_gpsd_hotplug_rule_is_a_problem_only_for_the_adapters_it_lists(tmp_path: Path) -> None:
    rules = {
        "60-gpsd.rules": 'SUBSYSTEM!="tty", GOTO="gpsd_rules_end"\n'
        'ATTRS{idVendor}=="067b", ATTRS{idProduct}=="2303", SYMLINK+="gps%n", TAG+="systemd", '
        'ENV{SYSTEMD_WANTS}="gpsdctl@%k.service"\nLABEL="gpsd_rules_end"\n'
    }
    prolific, ftdi = _usb("/dev/ttyUSB0", "067b:2303"), _usb("/dev/ttyUSB1", "0403:6001")
    [f] = [f for f in thieves(_host(tmp_path / "a", rules), [prolific, ftdi], _scan_running()) if f.about == "gpsd"]
    assert f.level == "warning" and "/dev/ttyUSB0 (067b:2303)" in f.text and "ttyUSB1" not in f.text and "gpsd.socket" in f.fix
    [f] = [f for f in thieves(_host(tmp_path / "b", rules), [ftdi], _scan_running()) if f.about == "gpsd"]
    assert f.level == "note"
    assert [f for f in thieves(_host(tmp_path / "c", {}), [prolific], _scan_running()) if f.about == "gpsd"] == []


def test_a_user_who_cannot_open_the_port_is_told_to_join_its_group(tmp_path: Path) -> None:
    with PtyGps(tmp_path / "ttyGPS") as pty:
        os.chmod(pty.slave_name, 0o660)  # crw-rw---- like a USB adapter in dialout; user nobody is in neither group
        code, report = ports_json("--user", "nobody", str(pty.link))
        [port] = report["ports"]  # type: ignore[misc]
        [f] = [f for f in port["findings"] if f["about"] == "permissions"]
        assert f["level"] == "warning" and "permission denied for user nobody" in f["text"]
        assert f"usermod -aG {port['group']} nobody" in f["fix"]
        assert code == 1
        code, report = ports_json("--user", "no-such-user-here", str(pty.link))
        assert any("no user 'no-such-user-here'" in f["text"] for f in report["findings"])  # type: ignore[attr-defined]


def test_the_human_view_names_the_stable_path_and_the_fix(tmp_path: Path) -> None:
    rules = {"60-gpsd.rules": 'ATTRS{idVendor}=="067b", ATTRS{idProduct}=="2303", ENV{SYSTEMD_WANTS}="gpsdctl@%k.service"\n'}
    host = _host(tmp_path, rules)
    dev = tmp_path / "dev"
    (dev / "serial" / "by-id").mkdir(parents=True)
    with PtyGps(tmp_path / "ttyUSB0") as pty:
        stable = dev / "serial" / "by-id" / "usb-Prolific_Technology_Inc._USB-Serial_Controller-if00-port0"
        stable.symlink_to(pty.slave_name)
        report = cmd_ports.collect([str(pty.link)], host=Host(dev=dev, udev_dirs=host.udev_dirs, use_udevadm=False, use_systemctl=False))
        [port] = report.ports
        assert port.stable == (str(stable),)
        out = tmp_path / "out.txt"
        with out.open("w") as fh:
            ports_view.render(report, ports_view.Console(file=fh, highlight=False, soft_wrap=True))
        text = out.read_text()
        assert str(stable) in text and "gpsd's hotplug rule is installed" in text and "fix: sudo systemctl disable" in text


def test_a_config_that_only_the_service_can_validate_still_labels_its_ports(tmp_path: Path) -> None:
    with PtyGps(tmp_path / "ttyRADIO") as pty:
        cfg = tmp_path / "alkomd.toml"
        cfg.write_text(
            '[node]\npath = "gorontalo/bone-bolango"\n'
            '[mqtt]\npassword_file = "/run/credentials/alkomd.service/mqtt-password"\n'  # only the service sees it
            f'[[device]]\nid = "base-radio"\ndriver = "nmea"\nurl = "{pty.link}"\n'
            '[[device]]\nid = "modem"\ndriver = "nmea"\nurl = "socket://192.0.2.1:4001"\n'
        )
        code, report = ports_json("--config", str(cfg), str(pty.link))
        [port] = report["ports"]  # type: ignore[misc]
        assert port["devices"] == ["base-radio"]
        assert any(f["about"] == "config" and "mqtt.password_file" in f["text"] for f in report["findings"])  # type: ignore[attr-defined]
        assert code == 0
    assert alkomctl("ports", "--config", str(tmp_path / "missing.toml")).returncode == 78


def test_a_device_disabled_on_purpose_is_not_a_problem(tmp_path: Path) -> None:
    """Issue 13 item 8: `enabled = false` on a [[device]] whose adapter is not plugged in made `ports` exit 1.
    Pass: its missing port is a note naming enabled = false (exit 0 as far as the config goes); the same port on an
    enabled device stays a warning (exit 1)."""
    with PtyGps(tmp_path / "ttyRADIO") as pty:
        cfg = tmp_path / "alkomd.toml"
        body = '[node]\npath = "gorontalo/bone-bolango"\n' f'[[device]]\nid = "base-radio"\ndriver = "nmea"\nurl = "{pty.link}"\n'
        spare = f'[[device]]\nid = "spare"\ndriver = "nmea"\nurl = "{tmp_path / "ttyUNPLUGGED"}"\n'
        cfg.write_text(body + spare + "enabled = false\n")

        def missing(report: dict[str, object]) -> dict[str, object]:
            [port] = [p for p in report["ports"] if p["path"].endswith("ttyUNPLUGGED")]  # type: ignore[attr-defined]
            return port  # type: ignore[no-any-return]

        code, report = ports_json("--config", str(cfg))
        [finding] = missing(report)["findings"]  # type: ignore[misc]
        assert finding["level"] == "note" and "enabled = false" in finding["text"], finding
        assert code == 0, report
        cfg.write_text(body + spare)
        code, report = ports_json("--config", str(cfg))
        [finding] = missing(report)["findings"]  # type: ignore[misc]
        assert finding["level"] == "warning" and "does not exist" in finding["text"] and code == 1
        cfg.write_text(body.replace('path = "gorontalo', 'path = 7 #') + spare + "enabled = false\n")  # does not validate
        code, report = ports_json("--config", str(cfg))
        assert missing(report)["findings"][0]["level"] == "note" and code == 0  # type: ignore[index]
