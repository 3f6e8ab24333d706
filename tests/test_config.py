"""The strict TOML configuration: what loads, and the one-line error for every kind of mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alkomd.daemon import config
from alkomd.daemon.config import EX_CONFIG, load
from alkomd.daemon.schema import ConfigError

MINIMAL = """\
[node]
path = "gorontalo/bone-bolango"

[[device]]
id = "car12-gps"
driver = "nmea"
url = "/dev/ttyUSB0"
"""


def write(tmp_path: Path, text: str, name: str = "alkomd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error(tmp_path: Path, text: str) -> tuple[ConfigError, Path]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value, path


def assert_error(tmp_path: Path, text: str, key: str) -> ConfigError:
    exc, path = error(tmp_path, text)
    assert exc.key == key
    assert exc.file == str(path)
    assert str(exc).startswith(f"{path}: {key}: "), str(exc)
    assert "\n" not in str(exc)
    return exc


# --- what loads ------------------------------------------------------------------------------


def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    cfg = load(path)
    assert cfg.source == path
    assert cfg.node.path == "gorontalo/bone-bolango"
    assert cfg.node.topic == "polri110/gorontalo/bone-bolango"
    assert cfg.node.tier == "polres"
    assert cfg.mqtt.port == 8883 and cfg.mqtt.tls is True
    assert cfg.store.synchronous == "full"
    assert cfg.units == ()
    [dev] = cfg.devices
    assert (dev.id, dev.driver, dev.enabled) == ("car12-gps", "nmea", True)
    assert dev.options.url == "/dev/ttyUSB0"
    assert dev.options.baud == 9600 and dev.options.framing == "8N1"


def test_config_without_devices_loads(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, '[node]\npath = "gorontalo"\n'))
    assert cfg.devices == ()


def test_empty_node_path_is_allowed_for_mabes(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, '[node]\npath = ""\ntier = "mabes"\n'))
    assert cfg.node.path == ""
    assert cfg.node.topic == "polri110"


def test_full_config_with_units_and_options(tmp_path: Path) -> None:
    (tmp_path / "mqtt-password").write_text("s3cret\n")
    cfg = load(write(tmp_path, MINIMAL + """
baud = 4800
framing = "7E1"
max_hdop = 5.5
enabled = false

[[device]]
id = "base-radio"
driver = "nmea"
url = "socket://10.0.0.5:4001"

[mqtt]
host = "broker.polda-gorontalo.example"
port = 18830
tls = false
password_file = "mqtt-password"

[[unit]]
id = "R2-12"
callsign = "Elang 12"
type = "motorcycle"
device = "car12-gps"

[[unit]]
id = "BASE"
device = "base-radio"
"""))
    assert [d.id for d in cfg.devices] == ["car12-gps", "base-radio"]
    assert cfg.devices[0].enabled is False
    assert (cfg.devices[0].options.baud, cfg.devices[0].options.framing) == (4800, "7E1")
    assert cfg.devices[0].options.max_hdop == 5.5
    assert cfg.mqtt.password_file == tmp_path / "mqtt-password"
    assert [(u.id, u.device, u.type) for u in cfg.units] == [("R2-12", "car12-gps", "motorcycle"), ("BASE", "base-radio", "car")]


def test_relative_store_path_is_resolved_against_the_config_directory(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    cfg = load(write(conf_dir, MINIMAL + '\n[store]\npath = "data/alkomd.db"\n'))
    assert cfg.store.path == conf_dir / "data" / "alkomd.db"
    cfg = load(write(conf_dir, MINIMAL + '\n[store]\npath = "/var/lib/x/alkomd.db"\n'))
    assert cfg.store.path == Path("/var/lib/x/alkomd.db")


def test_relative_store_path_is_absolute_when_the_config_path_is_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `alkomd -c alkomd.toml` run from /etc/alkomd must not store the database relative to
    # whatever the working directory is later. BUG (schema.py build: `base_dir or file.parent`
    # is Path(".") for a bare file name), fix: resolve the config path in config.load.
    write(tmp_path, MINIMAL + '\n[store]\npath = "data/alkomd.db"\n')
    monkeypatch.chdir(tmp_path)
    cfg = load("alkomd.toml")
    assert cfg.store.path.is_absolute()
    assert cfg.store.path == tmp_path / "data" / "alkomd.db"


# --- one error, naming the file and the key --------------------------------------------------


def test_unknown_top_level_section(tmp_path: Path) -> None:
    exc = assert_error(tmp_path, MINIMAL + "\n[mqqt]\nhost = \"x\"\n", "mqqt")
    assert "unknown section" in exc.message


def test_unknown_key_in_mqtt(tmp_path: Path) -> None:
    exc = assert_error(tmp_path, MINIMAL + '\n[mqtt]\nhots = "broker"\n', "mqtt.hots")
    assert "unknown key" in exc.message and "host" in exc.message


def test_wrong_type_string_for_port(tmp_path: Path) -> None:
    exc = assert_error(tmp_path, MINIMAL + '\n[mqtt]\nport = "1883x"\n', "mqtt.port")
    assert "integer" in exc.message and "'1883x'" in exc.message


def test_boolean_given_for_an_integer(tmp_path: Path) -> None:
    exc = assert_error(tmp_path, MINIMAL + "\n[mqtt]\nport = true\n", "mqtt.port")
    assert "integer" in exc.message


def test_float_given_for_an_integer(tmp_path: Path) -> None:
    assert_error(tmp_path, MINIMAL + "\n[mqtt]\nport = 18830.0\n", "mqtt.port")


def test_out_of_range_baud(tmp_path: Path) -> None:
    exc = assert_error(tmp_path, MINIMAL + "baud = 10\n", "device[0].baud")
    assert "between 50 and 4000000" in exc.message


def test_bad_choice_for_synchronous(tmp_path: Path) -> None:
    exc = assert_error(tmp_path, MINIMAL + '\n[store]\nsynchronous = "fast"\n', "store.synchronous")
    assert "full" in exc.message and "normal" in exc.message


def test_missing_required_device_url(tmp_path: Path) -> None:
    exc = assert_error(tmp_path, '[node]\npath = "gorontalo"\n[[device]]\nid = "gps"\ndriver = "nmea"\n', "device[0].url")
    assert "missing" in exc.message


def test_missing_node_path(tmp_path: Path) -> None:
    assert_error(tmp_path, '[node]\nname = "Polres Bone Bolango"\n', "node.path")
    assert_error(tmp_path, "[log]\nlevel = \"debug\"\n", "node.path")


def test_node_path_pattern(tmp_path: Path) -> None:
    assert_error(tmp_path, '[node]\npath = "Gorontalo/Bone Bolango"\n', "node.path")
    assert_error(tmp_path, '[node]\npath = "gorontalo/"\n', "node.path")


def test_unknown_driver(tmp_path: Path) -> None:
    exc = assert_error(tmp_path, MINIMAL.replace('driver = "nmea"', 'driver = "garmin"'), "device[0].driver")
    assert "'garmin'" in exc.message and "nmea" in exc.message


def test_unknown_key_in_a_device_names_its_index(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[device]]\nid = "b"\ndriver = "nmea"\nurl = "/dev/ttyUSB1"\nbaudrate = 4800\n'
    assert_error(tmp_path, text, "device[1].baudrate")


def test_duplicate_device_id(tmp_path: Path) -> None:
    exc = assert_error(tmp_path, MINIMAL + '\n[[device]]\nid = "car12-gps"\ndriver = "nmea"\nurl = "/dev/ttyUSB1"\n', "device[1].id")
    assert "duplicate" in exc.message and "device[0]" in exc.message


def test_unit_referencing_a_missing_device(tmp_path: Path) -> None:
    exc = assert_error(tmp_path, MINIMAL + '\n[[unit]]\nid = "R2-12"\ndevice = "car13-gps"\n', "unit[0].device")
    assert "'car13-gps'" in exc.message


def test_two_units_on_one_device(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[unit]]\nid = "R2-12"\ndevice = "car12-gps"\n\n[[unit]]\nid = "R2-13"\ndevice = "car12-gps"\n'
    exc = assert_error(tmp_path, text, "unit[1].device")
    assert "R2-12" in exc.message


def test_duplicate_unit_id(tmp_path: Path) -> None:
    assert_error(tmp_path, MINIMAL + '\n[[unit]]\nid = "R2-12"\n\n[[unit]]\nid = "R2-12"\n', "unit[1].id")


HYTERA = '\n[[device]]\nid = "hytera-cs"\ndriver = "hytera"\n'


def test_a_radios_emergency_code_must_be_an_emergency_code(tmp_path: Path) -> None:
    """Kenwood radios programmed to send 5 for emergency, and a Hytera station beside them: Hytera's emergencies are 99,
    which the site left out of the list; they would raise no alarm. Start-up stops and says so."""
    text = MINIMAL + HYTERA + "\n[radio_status]\nemergency = [5]\n"
    exc = assert_error(tmp_path, text, "radio_status.emergency")
    assert "lacks 99" in exc.message and "device[1] ('hytera-cs'" in exc.message
    load(write(tmp_path, MINIMAL + HYTERA + "\n[radio_status]\nemergency = [5, 99]\n"))
    load(write(tmp_path, MINIMAL + HYTERA.replace('"hytera"\n', '"hytera"\nenabled = false\n') + "\n[radio_status]\nemergency = [5]\n"))
    # an LRRP station reports emergencies only when told that unsolicited reports are ones
    lrrp = '\n[[device]]\nid = "trbo"\ndriver = "lrrp"\n'
    load(write(tmp_path, MINIMAL + lrrp + "\n[radio_status]\nemergency = [5]\n"))
    assert_error(tmp_path, MINIMAL + lrrp + "unsolicited_emergency = true\n\n[radio_status]\nemergency = [5]\n", "radio_status.emergency")


def test_the_code_that_ends_an_emergency_is_in_no_list(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[device]]\nid = "pei"\ndriver = "tetra"\nurl = "/dev/ttyUSB1"\n\n[radio_status]\navailable = [0, 10]\n'
    exc = assert_error(tmp_path, text, "device[1].after_emergency_code")
    assert "code 0 is in radio_status.available" in exc.message
    load(write(tmp_path, text.replace('url = "/dev/ttyUSB1"\n', 'url = "/dev/ttyUSB1"\nafter_emergency_code = 7\n')))


def test_password_file_that_does_not_exist(tmp_path: Path) -> None:
    exc = assert_error(tmp_path, MINIMAL + '\n[mqtt]\npassword_file = "missing-password"\n', "mqtt.password_file")
    assert str(tmp_path / "missing-password") in exc.message


def test_device_written_as_a_single_table(tmp_path: Path) -> None:
    text = '[node]\npath = "gorontalo"\n\n[device]\nid = "gps"\ndriver = "nmea"\nurl = "/dev/ttyUSB0"\n'
    exc = assert_error(tmp_path, text, "device")
    assert "[[device]]" in exc.message


def test_invalid_toml_syntax_names_the_file(tmp_path: Path) -> None:
    exc, path = error(tmp_path, '[node]\npath = "gorontalo\n')
    assert exc.key == ""
    assert exc.file == str(path)
    assert str(exc).startswith(f"{path}: not valid TOML")
    assert "\n" not in str(exc)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "nope.toml")
    assert str(info.value) == f"{tmp_path / 'nope.toml'}: file not found"


def test_parse_reports_the_path_it_is_given(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse({"node": {"path": "x"}, "mqtt": {"port": 0}}, tmp_path / "x.toml")
    assert str(info.value).startswith(f"{tmp_path / 'x.toml'}: mqtt.port: ")


# --- the CLI ---------------------------------------------------------------------------------


def alkomd_command() -> list[str]:
    script = Path(sys.executable).parent / "alkomd"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "alkomd.daemon.main"]


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALKOMD")}
    return subprocess.run(
        [*alkomd_command(), "--check-config", str(path)], capture_output=True, text=True, timeout=60, env=env
    )


def test_cli_check_config_exits_78_with_one_line_naming_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "baud = 10\n")
    proc = run_check(path)
    assert proc.returncode == EX_CONFIG == 78
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "device[0].baud" in lines[0]
    assert str(path) in lines[0]
    assert lines[0].startswith("alkomd: config error: ")


def test_cli_check_config_accepts_a_valid_file(tmp_path: Path) -> None:
    proc = run_check(write(tmp_path, MINIMAL))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""
