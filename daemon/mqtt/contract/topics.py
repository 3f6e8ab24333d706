"""Every MQTT topic alkomd publishes or reads, built and parsed here only; what each node subscribes to."""

from __future__ import annotations

from dataclasses import dataclass

_LEVELS_BELOW = {"polres": 0, "polda": 1, "mabes": 2}  # how many node levels below a node of this tier own units


def below_levels(tier: str) -> range:
    """The depths (1: a child, 2: a grandchild) of the nodes below a node of `tier` whose units it follows."""
    return range(1, _LEVELS_BELOW.get(tier, 0) + 1)


def _level(name: str) -> str:
    if not name or any(c in name for c in "+#/\0"):
        raise ValueError(f"not a valid topic level: {name!r}")
    return name


def state_topic(node: str) -> str:
    return f"{node}/state"


def health_topic(node: str) -> str:
    return f"{node}/health"


def audit_head_topic(node: str) -> str:
    """`<node>/audit/head` (retained): the end of the node's audit chain, kept by its parent (the anchor)."""
    return f"{node}/audit/head"


def probe_topic(node: str, token: str) -> str:
    """`<node>/probe/<token>`: alkomctl mqtt-check's round trip (a random token), or the daemon's own (`LINK_PROBE`)."""
    return f"{node}/probe/{_level(token)}"


LINK_PROBE = "link"  # the daemon's probe token: never a random hex token of mqtt-check


def link_probe_topic(node: str) -> str:
    """`<node>/probe/link`: after each (re)connect the daemon sends itself a probe there; calls wait for it to come back."""
    return probe_topic(node, LINK_PROBE)


def device_status_topic(node: str, device: str) -> str:
    return f"{node}/device/{_level(device)}/status"


def radio_level(radio: str) -> str:
    """A radio id as one topic level: a phone's `user/device` has its `/` (and any `%`) percent-encoded, the payload
    keeps the id as it is; `+`, `#` and NUL are refused as in every level."""
    return _level(radio.replace("%", "%25").replace("/", "%2F"))


def radio_topic(node: str, device: str, radio: str) -> str:
    return f"{node}/device/{_level(device)}/radio/{radio_level(radio)}"


def position_topic(node: str, unit: str) -> str:
    return f"{node}/unit/{_level(unit)}/position"


def unit_status_topic(node: str, unit: str) -> str:
    return f"{node}/unit/{_level(unit)}/status"


def status_set_topic(node: str, unit: str) -> str:
    return f"{node}/unit/{_level(unit)}/status/set"


def emergency_topic(node: str, unit: str) -> str:
    return f"{node}/unit/{_level(unit)}/emergency"


def alert_topic(node: str, unit: str) -> str:
    return f"{node}/unit/{_level(unit)}/alert"


def call_new_topic(node: str) -> str:
    return f"{node}/call/new"


def call_aml_topic(node: str) -> str:
    return f"{node}/call/aml"


def call_topic(node: str, call_id: str) -> str:
    return f"{node}/call/{_level(call_id)}"


def call_event_topic(node: str, call_id: str) -> str:
    return f"{node}/call/{_level(call_id)}/event"


def call_taken_topic(node: str, call_id: str) -> str:
    """`<node>/call/<call_id>/taken` (retained): the parent node took this call from `<node>` (it was offline or silent)."""
    return f"{node}/call/{_level(call_id)}/taken"


def call_event_result_topic(node: str, call_id: str) -> str:
    """`<node>/call/<call_id>/event/result`: the answer to every event (accepted, or refused with the reason)."""
    return f"{node}/call/{_level(call_id)}/event/result"


def subscriptions(node: str, tier: str, below_units: bool = True) -> tuple[str, ...]:
    """What a node of `tier` subscribes to: its own inputs; at a Polda or Mabes also the units of every node below
    (Mabes: the Poldas' own units too; `below_units` False: not those, a second connection takes them) and, to
    supervise them, those nodes' states and calls."""
    own = (f"{node}/unit/+/status/set", call_new_topic(node), call_aml_topic(node), f"{node}/call/+/event", f"{node}/call/+/taken",
           link_probe_topic(node))
    below: list[str] = []
    for depth in below_levels(tier):
        levels = "/+" * depth
        if below_units:
            below += [f"{node}{levels}/unit/+/position", f"{node}{levels}/unit/+/status"]
        below += [f"{node}{levels}/state", f"{node}{levels}/call/+", f"{node}{levels}/audit/head"]
    return (*own, *below)


def below_unit_subscriptions(node: str, tier: str) -> tuple[str, ...]:
    """The positions and statuses of the units below a Polda or Mabes: what `subscriptions` leaves out when a second
    connection takes them (`[mqtt] below_connection = "separate"`)."""
    return tuple(t for t in subscriptions(node, tier) if t.endswith(("/unit/+/position", "/unit/+/status")))


def below_probe_topic(node: str) -> str:
    """`<node>/probe/below`: the second connection's probe, as `link_probe_topic` is the daemon's."""
    return probe_topic(node, "below")


def subscription_qos(topic: str) -> int:
    """The QoS a node subscribes `topic` (one of `subscriptions`) with: 0 for the positions of the units below (each is
    retained and replaced by the unit's next one within seconds; a reconnect gets the retained ones again, so a position
    lost on the way costs nothing, while a PUBACK per position would cost the central tier about a fifth of its CPU),
    1 for everything else (a unit's status is sent on change only: a lost one would stand until the next change)."""
    return 0 if topic.endswith("/unit/+/position") else 1


_BULK_SUFFIXES = ("/position", "/status")


def is_bulk_topic(topic: str) -> bool:
    """Whether a message on `topic` may be a unit's position or status from a node below: the inbox's bulk lane, taken
    in batches after the calls (a call id or a node named "position" or "status" only takes the long way round)."""
    return topic.endswith(_BULK_SUFFIXES)


@dataclass(frozen=True, slots=True)
class StatusSet:
    """`<node>/unit/<unit>/status/set`: a dispatcher or the unit's app sets a unit's status."""

    unit: str


@dataclass(frozen=True, slots=True)
class CallNew:
    """`<node>/call/new`: a 110 call (or a child's escalation or hand-off)."""


@dataclass(frozen=True, slots=True)
class CallAml:
    """`<node>/call/aml`: an AML SMS or ELS body."""


@dataclass(frozen=True, slots=True)
class CallEvent:
    """`<node>/call/<call_id>/event`: a dispatcher's or a unit's action on a call."""

    call_id: str


@dataclass(frozen=True, slots=True)
class UnitBelow:
    """`<owner>/unit/<unit>/position|status` of a node below this one (a Polda or Mabes follows them)."""

    owner: str  # the owning node's topic
    unit: str
    kind: str  # "position" or "status"


@dataclass(frozen=True, slots=True)
class CallTaken:
    """`<node>/call/<call_id>/taken`: the parent took this node's call (it was offline or silent)."""

    call_id: str


@dataclass(frozen=True, slots=True)
class NodeBelowState:
    """`<below>/state` of a node below this one: online, or offline (its will)."""

    node: str


@dataclass(frozen=True, slots=True)
class NodeBelowCall:
    """`<below>/call/new` (a call sent to a node below) or `<below>/call/<call_id>` (its state there)."""

    node: str
    call_id: str  # "new" for a call sent to it


@dataclass(frozen=True, slots=True)
class LinkProbe:
    """`<node>/probe/link`: this daemon's own probe, back from the broker."""


@dataclass(frozen=True, slots=True)
class NodeBelowAnchor:
    """`<below>/audit/head`: the end of a node below's audit chain (this node keeps it)."""

    node: str


Inbound = StatusSet | CallNew | CallAml | CallEvent | CallTaken | UnitBelow | NodeBelowState | NodeBelowCall | NodeBelowAnchor | LinkProbe


def parse_inbound(node: str, topic: str) -> Inbound | None:
    """What a message on `topic` is for this node, or None when it is none of the contract's inputs."""
    if not topic.startswith(node + "/"):
        return None
    rest = topic[len(node) + 1 :]
    if rest == "call/new":
        return CallNew()
    if rest == "call/aml":
        return CallAml()
    if rest == f"probe/{LINK_PROBE}":
        return LinkProbe()
    if rest.startswith("call/") and rest.endswith("/event"):
        call_id = rest[len("call/") : -len("/event")]
        return CallEvent(call_id) if call_id and "/" not in call_id else None
    if rest.startswith("unit/") and rest.endswith("/status/set"):
        unit = rest[len("unit/") : -len("/status/set")]
        return StatusSet(unit) if unit and "/" not in unit else None
    if rest.startswith("call/") and rest.endswith("/taken"):
        call_id = rest[len("call/") : -len("/taken")]
        return CallTaken(call_id) if call_id and "/" not in call_id else None
    if rest.endswith("/audit/head"):
        below = rest[: -len("/audit/head")]
        return NodeBelowAnchor(f"{node}/{below}") if below and "/unit/" not in f"/{below}/" else None
    if rest.endswith("/state") and not rest.startswith(("unit/", "call/", "device/")):
        below = rest[: -len("/state")]
        if below and "/unit/" not in f"/{below}/" and "/call/" not in f"/{below}/":
            return NodeBelowState(f"{node}/{below}")
    head, sep, call_id = rest.rpartition("/call/")
    if sep and head and "/" not in call_id and call_id and "/unit/" not in f"/{head}/" and not head.startswith(("unit/", "call/")):
        return NodeBelowCall(f"{node}/{head}", call_id)
    head, sep, tail = topic.rpartition("/unit/")
    unit, _, kind = tail.partition("/")
    if sep and head != node and head.startswith(node + "/") and unit and kind in ("position", "status"):
        return UnitBelow(head, unit, kind)
    return None


def console_subscriptions(node: str, tier: str) -> tuple[str, ...]:
    """What a dispatcher console of `node` follows: the node's will, its units (and those of the nodes below), its calls
    and the replies to events."""
    units = [f"{node}{'/+' * depth}/unit/+/{k}" for depth in (0, *below_levels(tier))
             for k in ("position", "status", "emergency")]
    return (state_topic(node), *units, f"{node}/call/+", f"{node}/call/+/event/result")


@dataclass(frozen=True, slots=True)
class ConsoleTopic:
    """What a message a console receives is: `kind` is "state", "position", "status", "emergency", "call" or "result"."""

    kind: str
    key: str  # the unit id or the call id; "" for the node's state


def parse_console_topic(node: str, topic: str) -> ConsoleTopic | None:
    """Classify a topic of `console_subscriptions`; None for anything else (call/new, call/aml, an event)."""
    if topic == state_topic(node):
        return ConsoleTopic("state", "")
    if not topic.startswith(node + "/"):
        return None
    rest = topic[len(node) + 1 :].split("/")
    if len(rest) == 2 and rest[0] == "call" and rest[1] not in ("new", "aml"):
        return ConsoleTopic("call", rest[1])
    if len(rest) == 4 and rest[0] == "call" and rest[2:] == ["event", "result"]:
        return ConsoleTopic("result", rest[1])
    if len(rest) >= 3 and rest[-3] == "unit" and rest[-1] in ("position", "status", "emergency") and rest[-2]:
        return ConsoleTopic(rest[-1], rest[-2])
    return None
