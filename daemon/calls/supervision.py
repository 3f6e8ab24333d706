"""A parent watches the nodes below it, pure: a call sent to a node that is offline, or that it does not take up, is taken.

A Polda watches its Polres, Mabes its Poldas (and, when a Polda is offline too, that Polda's Polres):
each node's `<node>/state` (online, or offline by its will), every call published to its
`call/new`, and its retained call states (the node took the call up). A call is taken by the
nearest node above the one it was sent to that is online, when:

- `child_offline`: the node it was sent to is offline when the call arrives, or goes offline
  while the call is offered there (not yet answered): nobody there can answer it;
- `child_silent`: the node published no state for it within its answer timeout plus a grace
  (it is up, but does not handle calls), or left it offered past its answer deadline plus the grace
  (its escalation did not come).

Nothing here does I/O: the desk feeds it what the broker says and carries out the `Takeover`s
(publish the call on this node's own `call/new`, so its parent watches it in turn, and the retained
`<child>/call/<call_id>/taken` the child reads when it is back).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from alkomd.daemon.calls.types import CallRequest

CHILD_OFFLINE = "child_offline"
CHILD_SILENT = "child_silent"
MAX_WATCHED = 10_000  # calls watched at once; the oldest are forgotten first


@dataclass(frozen=True, slots=True)
class Watched:
    """A call sent to a node below, as this node has seen it."""

    node: str
    request: CallRequest
    seen: datetime  # when this node saw it sent
    state: str | None = None  # the node's last published state for it (None: not taken up yet)
    answer_deadline: datetime | None = None


@dataclass(frozen=True, slots=True)
class Takeover:
    node: str  # the node below it was sent to
    request: CallRequest
    reason: str


@dataclass
class Supervision:
    """The nodes below `node` and the calls sent to them; `timeout_of(node below)` (its tier's answer timeout) and
    `grace` set the deadlines."""

    node: str
    timeout_of: Callable[[str], timedelta]
    grace: timedelta
    online: dict[str, bool] = field(default_factory=dict)  # node below -> online (unknown: assumed online)
    calls: dict[tuple[str, str], Watched] = field(default_factory=dict)  # (node below, call_id)
    taken: set[tuple[str, str]] = field(default_factory=set)

    def _responsible(self, below: str) -> bool:
        """Whether this node is the nearest online one above `below` (every node between is offline)."""
        parent = below.rsplit("/", 1)[0]
        while parent != self.node and parent.startswith(self.node + "/"):
            if self.online.get(parent, True):
                return False
            parent = parent.rsplit("/", 1)[0]
        return parent == self.node

    def state(self, below: str, online: bool, now: datetime) -> list[Takeover]:
        """A node below said it is online or offline (its will)."""
        self.online[below] = online
        return [] if online else self.due(now)

    def call_sent(self, below: str, request: CallRequest, now: datetime) -> list[Takeover]:
        """A call was published on `<below>/call/new`."""
        key = (below, request.call_id)
        if key not in self.calls and key not in self.taken:
            if len(self.calls) >= MAX_WATCHED:
                oldest = min(self.calls, key=lambda k: self.calls[k].seen)
                del self.calls[oldest]
            self.calls[key] = Watched(below, request, now)
        return self.due(now)

    def call_state(
        self, below: str, call_id: str, state: str, answer_deadline: datetime | None, request: CallRequest | None, now: datetime
    ) -> None:
        """`below` published a state for a call: it took it up (once it is not offered, it is its own business). An
        offered call this node did not see arrive (a radio's emergency, an AML call made there) is watched from now."""
        key = (below, call_id)
        w = self.calls.get(key)
        if w is not None:
            self.calls[key] = replace(w, state=state, answer_deadline=answer_deadline)
        elif state == "offered" and request is not None and key not in self.taken and answer_deadline is not None \
                and answer_deadline > now - self.grace:
            self.calls[key] = Watched(below, request, now, state, answer_deadline)

    def due(self, now: datetime) -> list[Takeover]:
        """The calls to take now, each once."""
        out = []
        for key, w in list(self.calls.items()):
            reason = self._reason(w, now)
            if reason is None:
                if w.state is not None and w.state != "offered":
                    del self.calls[key]  # answered, escalated or closed there: nothing left to watch
                continue
            del self.calls[key]
            self.taken.add(key)
            out.append(Takeover(w.node, w.request, reason))
        return out

    def _reason(self, w: Watched, now: datetime) -> str | None:
        if not self._responsible(w.node) or w.state not in (None, "offered"):
            return None
        if not self.online.get(w.node, True):
            return CHILD_OFFLINE
        if w.state is None and now >= w.seen + self.timeout_of(w.node) + self.grace:
            return CHILD_SILENT
        if w.state == "offered" and w.answer_deadline is not None and now >= w.answer_deadline + self.grace:
            return CHILD_SILENT
        return None

    def next_deadline(self) -> datetime | None:
        """When `due` may have something new to say (None: nothing is watched)."""
        times = []
        for w in self.calls.values():
            if w.state is None:
                times.append(w.seen + self.timeout_of(w.node) + self.grace)
            elif w.state == "offered" and w.answer_deadline is not None:
                times.append(w.answer_deadline + self.grace)
        return min(times, default=None)
