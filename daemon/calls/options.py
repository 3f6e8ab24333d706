"""The [dispatch] config section: how long each tier has to answer, a unit to accept, and when nobody is alerted again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from alkomd.daemon.schema import spec


@dataclass(frozen=True)
class DispatchOptions:
    answer_timeout_polres_s: int = spec(60, min=5, max=3600, doc="Seconds a Polres has to answer a call before it escalates to the Polda.")
    answer_timeout_polda_s: int = spec(90, min=5, max=3600, doc="Seconds a Polda has to answer a call before it escalates to Mabes.")
    answer_timeout_mabes_s: int = spec(120, min=5, max=3600, doc="Seconds Mabes has to answer before the call is re-alerted.")
    accept_timeout_s: int = spec(60, min=5, max=3600, doc="Seconds an alerted unit has to accept before the next candidate is alerted.")
    realert_s: int = spec(60, min=5, max=3600, doc="Seconds between re-alerts of a call nobody answers (Mabes) or nobody can be sent to.")
    supervision_grace_s: int = spec(
        15, min=1, max=600,
        doc="Polda, Mabes: a call sent to a node below that takes it up after its answer timeout plus this (or that is "
        "offline) is taken here.",
    )

    def answer_timeout(self, tier: str) -> timedelta:
        if tier == "polres":
            return timedelta(seconds=self.answer_timeout_polres_s)
        if tier == "polda":
            return timedelta(seconds=self.answer_timeout_polda_s)
        return timedelta(seconds=self.answer_timeout_mabes_s)
