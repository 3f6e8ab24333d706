"""Unit positions: the station (driver records in, rows and messages out; the only writer of unit availability)."""
