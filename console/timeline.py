"""A call's timeline in the console: the daemon's steps (its call state's history) merged with what the console saw and sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

MAX_TIMELINE = 200  # entries kept per call


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    time: str
    what: str  # "step" (the call state's history), "state" (seen from a daemon that sends no history), "event", "reply"
    text: str
    action: str = ""  # a step's action (received, answered, assigned, ...)
    seq: int | None = None  # a step's number in the call's history at the node
    detail: str = ""  # a step's detail, as the daemon's audit record says it


def _text(v: object) -> str:
    return v if isinstance(v, str) else ""


def parse_history(body: dict[str, object]) -> list[TimelineEntry] | None:
    """The steps of a call-state payload's `history` (None: the daemon sends none; entries it cannot read are skipped)."""
    raw = body.get("history")
    if not isinstance(raw, list):
        return None
    out = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        seq, when, action, count = item.get("seq"), _text(item.get("time")), _text(item.get("action")), item.get("count")
        if not isinstance(seq, int) or isinstance(seq, bool) or not when or not action:
            continue
        unit, by, note = _text(item.get("unit")), _text(item.get("by")), _text(item.get("note"))
        text = action + (f" ({unit})" if unit else "") + (f" by {by}" if by else "")
        text += (f" ×{count}" if isinstance(count, int) and count > 1 else "") + (f": “{note}”" if note else "")
        out.append(TimelineEntry(when, "step", text, action, seq, _text(item.get("detail"))))
    return out


def _when(iso: str) -> datetime:
    """An ISO time for ordering (one that does not parse sorts first)."""
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


class Timeline:
    """One call's timeline: the daemon's steps by seq (kept after its bounded history dropped them), and the console's notes."""

    def __init__(self) -> None:
        self.steps: dict[int, TimelineEntry] = {}
        self.notes: list[TimelineEntry] = []

    def merge(self, steps: list[TimelineEntry]) -> bool:
        """Take a call state's history in: a step seen before is replaced (a folded one counts on). True if anything changed."""
        changed = False
        for s in steps:
            if s.seq is not None and self.steps.get(s.seq) != s:
                self.steps[s.seq] = s
                changed = True
        for seq in sorted(self.steps)[:-MAX_TIMELINE]:
            del self.steps[seq]
        return changed

    def note(self, entry: TimelineEntry) -> None:
        self.notes.append(entry)
        del self.notes[:-MAX_TIMELINE]

    def entries(self) -> list[TimelineEntry]:
        """Everything in time order, each step once; steps of one time keep their order (the sort is stable)."""
        steps = [s for _, s in sorted(self.steps.items())]
        return sorted([*steps, *self.notes], key=lambda t: _when(t.time))[-MAX_TIMELINE:]
