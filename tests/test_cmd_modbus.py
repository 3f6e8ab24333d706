"""`alkomctl modbus read|probe` as a real process against real pymodbus servers: output, --json, exit codes and hints."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_modbus import LAT, LON, ModbusSim, PtyLink, SilentListener, at, closed_port_url, f32, teltonika

from alkomd.daemon.exit_codes import EX_OK, EX_UNAVAILABLE, EX_USAGE
from alkomd.daemon.exit_codes import EX_PROBLEM as EX_DEVICE


def alkomctl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alkomd.daemon.ctl", "modbus", *args], capture_output=True, text=True, timeout=timeout
    )


def as_json(p: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert p.stdout.count("\n") == 1, p.stdout  # one JSON document on one line
    doc: dict[str, Any] = json.loads(p.stdout)
    return doc


@pytest.fixture
def sims() -> Iterator[Callable[..., ModbusSim]]:
    made: list[ModbusSim] = []

    def make(devices: dict[int, dict[int, int]], **kw: Any) -> ModbusSim:
        s = ModbusSim(devices, **kw).start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def test_probe_finds_a_teltonika_with_gps(sims: Callable[..., ModbusSim]) -> None:
    sim = sims({1: teltonika(order="little-byteswap")})
    p = alkomctl("probe", sim.url)
    assert p.returncode == EX_OK, p.stderr
    assert "this looks like a Teltonika RUT with GPS: fix at 0.543500, 123.059502, word order little-byteswap" in p.stdout
    for text in ("Telkomsel", "LTE", "sim1", "86400", "-71", "41.5", "latitude", "143"):
        assert text in p.stdout
    doc = as_json(alkomctl("probe", sim.url, "--json"))
    assert doc["ok"] is True and doc["unit"] == 1
    (m,) = doc["maps"]
    assert m["map"] == "teltonika-rut" and m["looks_like"] is True and m["word_order"] == "little-byteswap"
    values = {f["name"]: f["value"] for f in m["fields"]}
    assert values["latitude"] == pytest.approx(LAT, abs=1e-5) and values["longitude"] == pytest.approx(LON, abs=1e-5)
    assert values["operator"] == "Telkomsel" and values["satellites"] == 9 and values["temperature"] == pytest.approx(41.5)
    assert m["exceptions"] == []


def test_probe_a_teltonika_without_gps_and_one_without_a_fix(sims: Callable[..., ModbusSim]) -> None:
    nogps = sims({1: teltonika(gps=False)})
    doc = as_json(alkomctl("probe", nogps.url, "--json"))
    (m,) = doc["maps"]
    assert doc["ok"] is True and m["looks_like"] is True
    assert "without GPS (modbus exception 2 (illegal data address) at register 143)" in m["verdict"]
    assert {(e["address"], e["code"]) for e in m["exceptions"]} == {(143, 2), (179, 2)}
    nofix = sims({1: teltonika(lat=0.0, lon=0.0)})
    p = alkomctl("probe", nofix.url)
    assert p.returncode == EX_OK
    assert "this looks like a Teltonika RUT, but its GPS has no fix" in p.stdout


def test_probe_something_else(sims: Callable[..., ModbusSim]) -> None:
    other = sims({1: at(1000, [1, 2, 3])})  # answers, but every Teltonika register is unmapped
    p = alkomctl("probe", other.url)
    assert p.returncode == EX_DEVICE
    assert "not a Teltonika RUT: every read got an exception (codes 2)" in p.stdout


def test_probe_with_a_map_file(sims: Callable[..., ModbusSim], tmp_path: Path) -> None:
    sim = sims({5: at(0, f32(-0.8917) + f32(119.8707))})  # a modem with its position at 0..3 (Palu)
    mapfile = tmp_path / "palu.toml"
    mapfile.write_text(
        '[map]\nname = "palu-modem"\ntitle = "Palu test modem"\n'
        '[[field]]\nname = "lat"\naddress = 0\ntype = "float32"\nmeaning = "lat"\n'
        '[[field]]\nname = "lon"\naddress = 2\ntype = "float32"\nmeaning = "lon"\n'
    )
    doc = as_json(alkomctl("probe", sim.url, "--unit", "5", "--map", str(mapfile), "--json"))
    by_name = {m["map"]: m for m in doc["maps"]}
    assert by_name["teltonika-rut"]["looks_like"] is False
    assert by_name["palu-modem"]["looks_like"] is True and by_name["palu-modem"]["word_order"] == "big"
    assert "this looks like a Palu test modem with GPS: fix at -0.891700, 119.870697" in by_name["palu-modem"]["verdict"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[map]\nname = "x"\n[[field]]\nname = "lat"\naddress = 0\ntype = "real"\n')
    p = alkomctl("probe", sim.url, "--map", str(bad))
    assert p.returncode == EX_USAGE and f"{bad}: field[0].type: must be one of" in p.stderr


def test_read_decodes_and_prints_raw(sims: Callable[..., ModbusSim]) -> None:
    sim = sims({1: teltonika(order="little")})
    p = alkomctl("read", sim.url, "143", "4", "--type", "float32", "--word-order", "little")
    assert p.returncode == EX_OK, p.stderr
    assert "143: 0.5435" in p.stdout and "145: 123.0595" in p.stdout and "0x3F0B" in p.stdout
    doc = as_json(alkomctl("read", sim.url, "23", "16", "--type", "ascii", "--json"))
    assert doc["ok"] is True and doc["values"] == [{"address": 23, "value": "Telkomsel"}] and len(doc["registers"]) == 16
    doc = as_json(alkomctl("read", sim.url, "3", "--type", "int32", "--json"))  # COUNT defaults to one value
    assert doc["count"] == 2 and doc["values"] == [{"address": 3, "value": -71}]
    # the order the toolbox was first specified in: alkomctl modbus URL [--unit N] read ADDR COUNT
    doc = as_json(alkomctl(sim.url, "--unit", "1", "read", "143", "4", "--type", "float32", "--word-order", "little", "--json"))
    assert [round(v["value"], 4) for v in doc["values"]] == [0.5435, 123.0595]


def test_read_exception_reply(sims: Callable[..., ModbusSim]) -> None:
    sim = sims({1: teltonika()})
    p = alkomctl("read", sim.url, "7", "2")
    assert p.returncode == EX_DEVICE
    assert "modbus exception 2 (illegal data address) at register 7" in p.stderr
    assert "0-based: a manual's register number minus 1" in p.stderr
    doc = as_json(alkomctl("read", sim.url, "7", "2", "--json"))
    assert doc["ok"] is False and "exception 2" in doc["error"] and doc["hint"]


def test_what_a_device_says_is_printed_as_written(sims: Callable[..., ModbusSim]) -> None:
    """A modem's strings are data: `[/]` or `[red]` in its operator name is shown, never read as rich markup."""
    odd = "[/]Tsel [red]4G"
    sim = sims({1: teltonika(operator=odd)})
    p = alkomctl("probe", sim.url)
    assert p.returncode == EX_OK, p.stderr
    assert repr(odd) in p.stdout and "this looks like a Teltonika RUT with GPS" in p.stdout
    p = alkomctl("read", sim.url, "23", "16", "--type", "ascii")
    assert p.returncode == EX_OK, p.stderr
    assert f"23: {odd!r}" in p.stdout


def test_unreachable_and_silent() -> None:
    p = alkomctl("probe", closed_port_url())
    assert p.returncode == EX_UNAVAILABLE
    assert "connection refused" in p.stderr
    assert "is the modem's Modbus TCP server enabled? It is off by default on Teltonika (Services > Modbus)" in p.stderr
    listener = SilentListener()
    try:
        p = alkomctl("read", listener.url, "1", "--timeout", "0.3", "--retries", "0")
        assert p.returncode == EX_UNAVAILABLE
        assert f"no reply within 0.3 s from unit 1 at 127.0.0.1:{listener.port}" in p.stderr
        assert "is unit 1 right?" in p.stderr
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["read", "udp://10.0.0.1", "1"], "bad URL"),
        (["read", "tcp://127.0.0.1:1", "1", "126"], "must be 1..125"),
        (["read", "tcp://127.0.0.1:1", "143", "3", "--type", "float32"], "COUNT must be a multiple of 2"),
        (["read", "tcp://127.0.0.1:1", "65535", "2"], "past register 65535"),
        (["probe", "tcp://127.0.0.1:1", "--unit", "300"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    p = alkomctl(*args)
    assert p.returncode == EX_USAGE and message in p.stderr


def test_probe_over_rtu(sims: Callable[..., ModbusSim], tmp_path: Path) -> None:
    link = PtyLink(tmp_path / "rs485")
    try:
        sims({3: teltonika(lat=-6.1754, lon=106.8272)}, serial_port=str(link.b), baud=19200)
        doc = as_json(alkomctl("probe", str(link.a), "--unit", "3", "--baud", "19200", "--json"))
        assert doc["ok"] is True and "with GPS: fix at -6.175400, 106.827202" in doc["maps"][0]["verdict"]
    finally:
        link.close()


def test_rtu_line_without_a_device(tmp_path: Path) -> None:
    link = PtyLink(tmp_path / "rs485")  # a cable with nothing at the other end
    try:
        p = alkomctl("read", str(link.a), "--unit", "4", "--timeout", "0.3", "1")
        assert p.returncode == EX_UNAVAILABLE
        assert f"no reply within 0.3 s from unit 4 at {link.a}" in p.stderr and "check baud rate and framing" in p.stderr
    finally:
        link.close()


def test_help_explains() -> None:
    for args in (["--help"], ["read", "--help"], ["probe", "--help"]):
        p = alkomctl(*args)
        assert p.returncode == 0 and "0-based" in p.stdout and "exit codes" in p.stdout
