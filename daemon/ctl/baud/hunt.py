"""`alkomctl baud`'s hunt: find a port's baud rate and framing by listening at each setting in turn, as gpsd does.

Like gpsd, the rates are tried from 4800 up (the rates GPS receivers use), then the slow rates
of radio data ports (2400, 1200), all in 8N1 and then in 7N2 (gpsd toggles to 7N2 after each
full pass). At each setting the input is flushed and the port listened to until two sentences
with a valid checksum arrive (found: a wrong rate practically never gives one), or the dwell
time passes, or enough garbage arrived without one valid sentence to move on (gpsd's
SNIFF_RETRIES idea). One valid sentence buys extra time for the second.
"""

from __future__ import annotations

import json
import sys
import termios
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TextIO

import serial
from rich.console import Console
from rich.text import Text

from alkomd.daemon.ctl.serial_port import PortError, close_quietly, open_for_tool, printable, stop_on_signals
from alkomd.daemon.exit_codes import EX_OK, EX_PROBLEM, EX_UNAVAILABLE, EX_USAGE
from alkomd.daemon.records import utc_now
from alkomd.drivers.nmea import Decoder, Sentence, Verdict
from alkomd.drivers.nmea_serial import FRAMINGS as ALL_FRAMINGS
from alkomd.drivers.nmea_serial import port_hint

RATES = (4800, 9600, 19200, 38400, 57600, 115200, 2400, 1200)
FRAMINGS = ("8N1", "7N2")
NEED = 2  # valid sentences that settle a setting
DWELL_S = 3.0  # per setting (gpsd: 3 s without sync)
CONFIRM_S = 4.0  # after a first valid sentence, wait this long for the second (radios report every few seconds)
GIVE_UP_BYTES = 400  # this much without one valid sentence: not this setting


@dataclass(frozen=True)
class Trial:
    """What one setting gave."""

    baud: int
    framing: str
    seconds: float
    bytes: int
    valid: int  # sentences with a valid checksum
    invalid: int  # bad or missing checksums, unparsable
    garbage_bytes: int
    sample: str  # the first valid sentence
    error: str = ""  # the port refused the setting

    @property
    def setting(self) -> str:
        return f"{self.baud} {self.framing}"

    @property
    def found(self) -> bool:
        return self.valid >= NEED and self.valid > self.invalid


@dataclass(frozen=True)
class Hunt:
    port: str
    trials: tuple[Trial, ...]
    interrupted: bool = False

    @property
    def found(self) -> Trial | None:
        """The setting with the most valid sentences among those that settled it."""
        ok = [t for t in self.trials if t.found]
        return max(ok, key=lambda t: (t.valid - t.invalid, -self.trials.index(t))) if ok else None


def settings(rates: Sequence[int], framings: Sequence[str]) -> list[tuple[int, str]]:
    """Every rate in 8N1, then every rate in 7N2 (gpsd's order)."""
    return [(r, f) for f in framings for r in rates]


def configure(port: serial.SerialBase, baud: int, framing: str) -> None:
    """Change the line settings of an open port (raises SettingRefused if the port cannot take them).

    Data bits go first: after a refused 7-bit setting the next 8-bit one must not be applied
    with the 7 bits still pending (a pty, for one, takes only 8 data bits).
    """
    try:
        port.bytesize = int(framing[0])
        port.parity = framing[1]
        port.stopbits = int(framing[2])
        port.baudrate = baud
    except (termios.error, ValueError, serial.SerialException) as exc:
        raise SettingRefused(str(exc)) from exc
    port.reset_input_buffer()


class SettingRefused(Exception):
    """The port (its driver) does not take a setting: a pty takes only 8 data bits."""


def listen(
    port: serial.SerialBase,
    baud: int,
    framing: str,
    stop: threading.Event,
    dwell_s: float = DWELL_S,
    clock: Callable[[], float] = time.monotonic,
) -> Trial:
    """Listen at one setting; see the module docstring for when it stops."""
    start = clock()
    try:
        configure(port, baud, framing)
    except SettingRefused as exc:
        return Trial(baud, framing, 0.0, 0, 0, 0, 0, "", f"the port refuses this setting ({exc})")
    samples: list[Sentence] = []
    decoder = Decoder("baud", on_sentence=lambda s: samples.append(s) if s.verdict is Verdict.OK and not samples else None)
    deadline = start + dwell_s
    nbytes = 0
    extended = False
    while not stop.is_set() and clock() < deadline:
        chunk = port.read(port.in_waiting or 1)
        if not chunk:
            continue
        nbytes += len(chunk)
        decoder.feed(chunk, utc_now(), clock())
        if decoder.sentences >= NEED:
            break
        if decoder.sentences == 0 and nbytes >= GIVE_UP_BYTES:
            break
        if decoder.sentences == 1 and not extended:
            deadline, extended = max(deadline, clock() + CONFIRM_S), True
    invalid = decoder.checksum_errors + decoder.parse_errors
    sample = printable(samples[0].raw) if samples else ""
    return Trial(baud, framing, round(clock() - start, 2), nbytes, decoder.sentences, invalid, decoder.garbage_bytes, sample)


def hunt(
    port: serial.SerialBase,
    name: str,
    rates: Sequence[int] = RATES,
    framings: Sequence[str] = FRAMINGS,
    dwell_s: float = DWELL_S,
    every: bool = False,
    stop: threading.Event | None = None,
    progress: Callable[[Trial], None] | None = None,
) -> Hunt:
    """Try each setting in turn; stop at the first that settles it unless `every`."""
    stop = stop or threading.Event()
    trials: list[Trial] = []
    for baud, framing in settings(rates, framings):
        if stop.is_set():
            break
        t = listen(port, baud, framing, stop, dwell_s)
        trials.append(t)
        if progress is not None:
            progress(t)
        if t.found and not every:
            break
    return Hunt(name, tuple(trials), interrupted=stop.is_set())


def advice(h: Hunt) -> str:
    """What the evidence says when no setting gave NMEA."""
    if not h.trials:
        return "nothing was tried"
    if all(t.bytes == 0 for t in h.trials if not t.error):
        return (
            "no byte at any setting: the device sends nothing. Is it on, with its GPS/data output enabled? "
            "Check the cable (TX to RX, a null-modem where needed) and `alkomctl ports " + h.port + "`"
        )
    near = [t for t in h.trials if t.valid]
    if near:
        t = max(near, key=lambda t: t.valid)
        return (
            f"{t.setting} gave {t.valid} valid sentence(s) but not {NEED}: a device that reports rarely? "
            f"Try alkomctl baud {h.port} --dwell 15, or alkomctl sniff {h.port} --baud {t.baud} --framing {t.framing}"
        )
    return (
        "bytes at every setting but never a valid sentence: not NMEA (a binary protocol?), RS-232 levels on a "
        "TTL adapter or the reverse (inverted bits), or a rate not tried (--rates)"
    )


def hunt_dict(h: Hunt) -> dict[str, object]:
    found = h.found
    return {
        "port": h.port,
        "found": None if found is None else {"baud": found.baud, "framing": found.framing, "valid": found.valid,
                                             "invalid": found.invalid, "sample": found.sample},
        "trials": [asdict(t) for t in h.trials],
        "interrupted": h.interrupted,
        "advice": "" if found else advice(h),
    }


def _trial_line(t: Trial) -> Text:
    line = Text(f"  {t.setting:<12} {t.seconds:5.1f} s  {t.bytes:6d} bytes  ")
    line.append(f"{t.valid:3d} valid", style="green" if t.valid else "")
    line.append(f"  {t.invalid:3d} invalid", style="red" if t.invalid else "")
    line.append(f"  {t.garbage_bytes:6d} garbage bytes  ")
    if t.found:
        line.append("NMEA", style="bold green")
    elif t.error:
        line.append(t.error, style="dim")
    elif t.bytes == 0:
        line.append("silence", style="dim")
    else:
        line.append("no", style="dim")
    return line


def find_baud(
    port_name: str,
    rates: Sequence[int] = RATES,
    framings: Sequence[str] = FRAMINGS,
    dwell_s: float = DWELL_S,
    every: bool = False,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """`alkomctl baud`: 0 a setting gives NMEA, 1 none does, 66/69/75/77 the port could not be read."""
    bad = [f for f in framings if f not in ALL_FRAMINGS]
    if bad:
        print(f"alkomctl baud: unknown framing {bad[0]!r} (known: {', '.join(ALL_FRAMINGS)})", file=err)
        return EX_USAGE
    try:
        port = open_for_tool(port_name, rates[0], framings[0])
    except PortError as exc:
        print(f"alkomctl baud: {exc}", file=err)
        return exc.code
    console = Console(file=out, highlight=False, soft_wrap=True, markup=False)
    stop = threading.Event()
    n = len(settings(rates, framings))
    if not as_json:
        console.print(Text(f"Listening to {port_name} at up to {n} settings, about {dwell_s:g} s each "
                           f"(Ctrl-C stops)", style="bold"))

    def progress(t: Trial) -> None:
        if not as_json:
            console.print(_trial_line(t))

    lost = ""
    with stop_on_signals(stop):
        try:
            result = hunt(port, port_name, rates, framings, dwell_s, every, stop, progress)
        except (serial.SerialException, OSError) as exc:
            lost = port_hint(exc)
            result = Hunt(port_name, ())
        finally:
            close_quietly(port)
    if lost:
        print(f"alkomctl baud: lost {port_name}: {lost}", file=err)
        return EX_UNAVAILABLE
    found = result.found
    if as_json:
        out.write(json.dumps(hunt_dict(result), indent=2) + "\n")
    elif found is not None:
        console.print()
        console.print(Text(f"found: {found.setting}: {found.valid} valid sentences, {found.invalid} invalid", style="bold green"))
        console.print(Text(f"sample: {found.sample}"))
        console.print(Text("in the [[device]] table of this port:", style="dim"))
        console.print(Text(f'  baud = {found.baud}\n  framing = "{found.framing}"'))
    else:
        console.print()
        console.print(Text("no setting gave valid NMEA" + (" (interrupted)" if result.interrupted else ""), style="bold red"))
        console.print(Text("hint: " + advice(result), style="yellow"))
    return EX_OK if found is not None else EX_PROBLEM
