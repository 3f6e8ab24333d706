"""Which voice call a phone's AML SMS or ELS report belongs to, and which report call a voice call turns out to be (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from alkomd.daemon.calls.dispatch import FLAG_AML_UNMATCHED, Call
from alkomd.daemon.calls.types import CallRequest
from alkomd.daemon.config import CallsConfig
from alkomd.daemon.geodesy import geodesic_m

AML_SOURCES = ("aml-sms", "els-https")  # intake's sources of a phone's own location report


def fits(report: CallRequest, voice: Call, now: datetime, cfg: CallsConfig) -> bool:
    """Whether a phone's report and a voice call can be the same call: taken in within `aml_window_s` of each other,
    the same caller when both say, and no farther than `aml_match_m` apart when both have a place."""
    if abs((voice.created - now).total_seconds()) > cfg.aml_window_s:
        return False
    if report.caller and voice.request.caller and report.caller != voice.request.caller:
        return False
    a, b = report.location, voice.request.location
    return a is None or b is None or geodesic_m(a.lat, a.lon, b.lat, b.lon) <= cfg.aml_match_m


def voice_call_of(report: CallRequest, calls: Iterable[Call], now: datetime, cfg: CallsConfig) -> Call | None:
    """The open voice call a phone's report belongs to: one of the same caller if the report says, else the newest that fits."""
    matching = [c for c in calls if c.request.source not in AML_SOURCES and fits(report, c, now, cfg)]
    same = [c for c in matching if report.caller and c.request.caller == report.caller]
    return max(same or matching, key=lambda c: c.created, default=None)


def report_call_of(voice: CallRequest, calls: Iterable[Call], now: datetime, cfg: CallsConfig) -> Call | None:
    """An open call made from a phone's report that this voice call turns out to be (the report came first)."""
    waiting = [c for c in calls if FLAG_AML_UNMATCHED in c.flags and c.request.source in AML_SOURCES]
    matching = [c for c in waiting if fits(c.request, replace(c, request=voice, created=now), now, cfg)
                and abs((c.created - now).total_seconds()) <= cfg.aml_window_s]
    return max(matching, key=lambda c: c.created, default=None)
