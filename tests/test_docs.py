"""The documentation where users look stays true: README keys, shipped config, --help texts."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from alkomd.daemon import config as cfgmod
from alkomd.daemon.dispatch import DispatchOptions
from alkomd.daemon.jurisdictions import JurisdictionOptions
from alkomd.daemon.recommend import RecommendOptions
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
        GpsdOptions, NmeaUdpOptions, FleetSyncOptions, cfgmod.RadioStatusConfig, ModbusOptions,
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
    [["alkomd.daemon.cli"], ["alkomd.daemon.ctl"], ["alkomd.daemon.ctl", "decode"], *(["alkomd.daemon.ctl", t] for t in SERIAL_TOOLS)],
)
def test_help_explains(cmd: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", *cmd, "--help"], capture_output=True, text=True, check=True).stdout
    assert len(out.splitlines()) > 8 and "usage:" in out


@pytest.mark.parametrize("tool", SERIAL_TOOLS)
def test_every_serial_tool_is_in_the_readme_with_its_exit_codes_and_an_example(tool: str) -> None:
    assert f"| `alkomctl {tool} " in README
    out = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", tool, "--help"], capture_output=True, text=True, check=True).stdout
    assert "exit codes:" in out and f"alkomctl {tool} " in out.split("examples:", 1)[1]
