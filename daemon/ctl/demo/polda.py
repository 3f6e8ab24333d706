"""The demo's tiers: the Polres's jurisdiction and answer timeout, and a simulated Polda node that takes what it escalates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from alkomd.daemon.ctl.demo.station import ROOT

POLDA_PATH = "gorontalo"
POLDA_NAME = "Polda Gorontalo (demo)"
POLRES_CODE = "75.71"  # Kota Gorontalo: the demo Polres's jurisdiction
ANSWER_TIMEOUT_POLRES_S = 60  # a call nobody answers at the Polres this long goes to the Polda
ANSWER_TIMEOUT_POLDA_S = 900  # and stays there for the demo (there is no Mabes)
# The repository's jurisdictions (the demo runs from a checkout: ./run-demo installs it editable).
GEOJSON = Path(__file__).resolve().parents[3] / "config" / "jurisdictions" / "gorontalo-adm2.geojson"


def _q(value: str | Path) -> str:
    """A TOML basic string (JSON string escapes are valid TOML for these values)."""
    return json.dumps(str(value), ensure_ascii=False)


def _jurisdictions(include_property: str, values: str, extra: str = "") -> list[str]:
    if not GEOJSON.is_file():
        return []
    return ["", "[jurisdictions]", f"file = {_q(GEOJSON)}", f"include_property = {_q(include_property)}",
            f"include_values = [{values}]"] + ([extra] if extra else [])


def polres_sections() -> str:
    """What the demo Polres's config adds for calls: its jurisdiction (the map, location status) and answer timeout."""
    out = _jurisdictions("code", _q(POLRES_CODE))
    out += ["", "[dispatch]", f"answer_timeout_polres_s = {ANSWER_TIMEOUT_POLRES_S}", "", "[recommend]", "max_fix_age_s = 600"]
    return "\n".join(out) + "\n"


def polda_config(broker_port: int, workdir: Path, protocol: str, node_path: str) -> str:
    """The simulated Polda's config (TOML text): no radios, the demo Polres as its child, on the demo broker."""
    out = [
        "# The demo's Polda, written by `alkomctl demo`: it takes the calls the demo Polres does not answer.",
        "[node]", f"path = {_q(POLDA_PATH)}", f"root = {_q(ROOT)}", f"name = {_q(POLDA_NAME)}", 'tier = "polda"',
        "", "[store]", f"path = {_q(workdir / 'alkomd.db')}", 'synchronous = "normal"',
        "", "[mqtt]", 'host = "127.0.0.1"', f"port = {broker_port}", "tls = false", f"protocol = {_q(protocol)}",
        "health_interval_s = 2",
        "", "[log]", 'level = "info"',
    ]
    out += _jurisdictions("level", '"regency", "city"', f"children = [{_q(POLRES_CODE + '=' + node_path)}]")
    out += ["", "[dispatch]", f"answer_timeout_polres_s = {ANSWER_TIMEOUT_POLRES_S}",
            f"answer_timeout_polda_s = {ANSWER_TIMEOUT_POLDA_S}"]
    return "\n".join(out) + "\n"


def start_polda(broker_port: int, work: Path, protocol: str, node_path: str) -> subprocess.Popen[bytes]:
    """The Polda daemon as a child process (its own session, like the Polres's), config and log under `work`/polda."""
    home = work / "polda"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "alkomd.toml"
    config.write_text(polda_config(broker_port, home, protocol, node_path))
    with (home / "alkomd.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "alkomd.daemon.main", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
        )
