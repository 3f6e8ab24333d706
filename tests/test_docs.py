"""The documentation where users look stays true: README keys, shipped config, --help texts."""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from alkomd.daemon import config as cfgmod
from alkomd.daemon.calls.jurisdictions import JurisdictionOptions
from alkomd.daemon.calls.options import DispatchOptions
from alkomd.daemon.calls.recommend import RecommendOptions
from alkomd.drivers.fleetsync import FleetSyncOptions
from alkomd.drivers.gpsd import GpsdOptions
from alkomd.drivers.modbus import ModbusOptions
from alkomd.drivers.nmea_serial import NmeaOptions
from alkomd.drivers.nmea_udp import NmeaUdpOptions

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    "section",
    [
        cfgmod.NodeConfig, cfgmod.StoreConfig, cfgmod.MqttConfig, cfgmod.LogConfig, cfgmod.AvailabilityConfig,
        cfgmod.UnitConfig, NmeaOptions, cfgmod.CallsConfig, DispatchOptions, RecommendOptions, JurisdictionOptions,
        GpsdOptions, NmeaUdpOptions, FleetSyncOptions, cfgmod.RadioStatusConfig, ModbusOptions, cfgmod.HistoryConfig,
    ],
)
def test_every_config_key_is_in_the_readme_reference(section: type) -> None:
    documented = set(re.findall(r"`([a-z_]+)`", README))
    missing = [f.name for f in dataclasses.fields(section) if f.name not in documented]
    assert not missing, f"README's configuration reference lacks {missing}"


def test_every_shipped_config_is_valid() -> None:
    files = sorted((ROOT / "config").glob("*.toml"))
    assert files
    for f in files:
        cfg = cfgmod.load(f)
        index = cfgmod.load_jurisdictions(cfg)
        assert index is None or index.ids


SERIAL_TOOLS = ["ports", "sniff", "baud", "capture", "replay", "support-bundle"]


@pytest.mark.parametrize(
    "cmd",
    [["alkomd.daemon.main"], ["alkomd.daemon.central.main"],
     ["alkomd.daemon.ctl"], ["alkomd.daemon.ctl", "decode"], *(["alkomd.daemon.ctl", t] for t in SERIAL_TOOLS)],
)
def test_help_explains(cmd: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", *cmd, "--help"], capture_output=True, text=True, check=True).stdout
    assert len(out.splitlines()) > 8 and "usage:" in out


@pytest.mark.parametrize("tool", SERIAL_TOOLS)
def test_every_serial_tool_is_in_the_readme_with_its_exit_codes_and_an_example(tool: str) -> None:
    assert f"| `alkomctl {tool} " in README
    out = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", tool, "--help"], capture_output=True, text=True, check=True).stdout
    assert "exit codes:" in out and f"alkomctl {tool} " in out.split("examples:", 1)[1]


def _alkomctl_commands() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every alkomctl command people run ("status", "audit verify", "modbus read", ...) and its parser."""
    from alkomd.daemon import ctl

    def walk(p: argparse.ArgumentParser, path: list[str]) -> list[tuple[str, argparse.ArgumentParser]]:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [(" ".join(path), p)]
        return [leaf for name, sp in subs[0].choices.items() for leaf in walk(sp, [*path, name])]

    return walk(ctl.parser(), [])


def test_every_alkomctl_command_explains_itself_with_exit_codes_and_examples() -> None:
    lacking = []
    for name, p in _alkomctl_commands():
        text = p.format_help()
        examples = text.split("examples:", 1)[1] if "examples:" in text else ""
        if "exit codes" not in text.lower() or f"alkomctl {name}" not in examples:
            lacking.append(name)
    assert not lacking, f"--help without exit codes or an example: {lacking}"


def test_the_readme_alkomctl_table_names_every_option() -> None:
    rows = [ln for ln in README.split("\n## alkomctl\n", 1)[1].split("\n## ", 1)[0].splitlines() if ln.startswith("| `alkomctl ")]
    row_of: dict[str, str] = {}
    for row in rows:
        first = row.split("` |", 1)[0]
        for names, action in re.findall(r"`alkomctl ((?:[\w-]+\\\|)*[\w-]+)((?: [a-z][\w-]*)?)", first):
            for n in names.split("\\|"):
                row_of[n + action] = row
    missing = []
    for name, p in _alkomctl_commands():
        row = row_of.get(name)
        if row is None:
            missing.append(f"{name}: no row")
            continue
        for a in p._actions:
            for opt in a.option_strings:
                if opt.startswith("--") and opt != "--help" and not re.search(re.escape(opt) + r"(?![\w-])", row):
                    missing.append(f"{name} {opt}")
    assert not missing, f"README's alkomctl table lacks {missing}"
