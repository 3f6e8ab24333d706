"""Kenwood FleetSync / NXDN base radio on a serial port: many radios' positions and status codes.

A base or control-station radio, set to "Data + GPS Data Output", prints on its data port what
it hears from the fleet: `$PKLDS`/`$PKNDS` (position, fleet and id or U-id, status code),
`$PKLSH`/`$PKNSH` (short position), `$PKLID`/`$PKNID` (status only), sometimes framed with
STX/ETX, mixed with the radio's own standard NMEA and with caller-ID frames (`STX I1 ... ETX`:
who keys up). The port is read exactly as the `nmea` driver reads one (the decoder knows these
sentences: `alkomd.drivers.kenwood`); each relayed fix carries its radio (`100-1001`, `U00002`,
a numeric `004332199`), which `[[unit]] radio` maps to a unit, one fix per transmission; each
status code becomes a `RadioStatus` record (`[radio_status]` maps codes to unit statuses and
emergencies), each key-up a `RadioHeard`. Standard sentences that only repeat a relayed report
(same time, same place) are the relayed radio's, never the base radio's own fix. Only the
defaults differ: a base radio speaks only when a radio reports, so it is called silent or
without fixes only after much longer quiet.
"""

from __future__ import annotations

from dataclasses import dataclass

from alkomd.daemon.schema import spec
from alkomd.drivers.base import DriverSpec
from alkomd.drivers.nmea_serial import NmeaOptions, NmeaSerial


@dataclass(frozen=True)
class FleetSyncOptions(NmeaOptions):
    silent_after_s: float = spec(900.0, min=1, max=86400, doc="No valid sentence for this long: state silent.")
    no_fix_after_s: float = spec(1800.0, min=1, max=86400, doc="No fix from any radio for this long: state no_fix.")


class FleetSyncBase(NmeaSerial):
    """A base radio's port: the NMEA reader, reporting under the driver name `fleetsync`."""

    driver_name = "fleetsync"


DRIVER = DriverSpec(
    name="fleetsync",
    options=FleetSyncOptions,
    create=FleetSyncBase,
    summary="Kenwood FleetSync/NXDN base radio relaying many radios' GPS and status on one serial port",
)
