"""StateTracker (device state from a fake clock and counters), Backoff (reopen delays), Link and the reconnect loop."""

from __future__ import annotations

import itertools
import logging
import random
import threading
from dataclasses import dataclass, replace

import pytest

from alkomd.daemon.records import Counters, DeviceState, DeviceStatus, Record
from alkomd.drivers.base import ERROR_WINDOW_S, Backoff, Emit, Link, LinkError, Reconnecting, StateTracker

SILENT_S = 10.0
NO_FIX_S = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A tracker with a fake clock and counters the test moves by hand."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.counters = Counters()
        self.emitted: list[Record] = []
        self.tracker = StateTracker(
            "car12-gps", "nmea", self.emitted.append, SILENT_S, NO_FIX_S, lambda: self.counters, clock=self.clock
        )

    def statuses(self) -> list[DeviceStatus]:
        return [r for r in self.emitted if isinstance(r, DeviceStatus)]

    def states(self) -> list[DeviceState]:
        """The sequence of states reported (a detail-only update, e.g. "waiting for the first
        fix" -> "", may repeat a state; it is folded here)."""
        out: list[DeviceState] = []
        for r in self.statuses():
            if not out or out[-1] is not r.state:
                out.append(r.state)
        return out

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    def sentences(self, good: int = 1, bad: int = 0) -> None:
        """The decoder saw `good` valid and `bad` corrupt sentences just now."""
        c = self.counters
        self.counters = replace(c, sentences=c.sentences + good, checksum_errors=c.checksum_errors + bad)
        if good:
            self.tracker.saw_sentence()

    def fix(self) -> None:
        self.sentences(2)
        self.counters = replace(self.counters, fixes=self.counters.fixes + 1)
        self.tracker.saw_fix()

    def run(self, seconds: int, *, sentences: bool = True, fixes: bool = True) -> None:
        """`seconds` of a 1 Hz receiver, evaluated twice a second like the serial driver does."""
        for _ in range(seconds):
            if fixes:
                self.fix()
            elif sentences:
                self.sentences(2)
            for _ in range(2):
                self.advance(0.5)
                self.tracker.evaluate()


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_open_reports_waiting_for_the_first_fix(h: Harness) -> None:
    h.tracker.opened()
    assert h.states() == [DeviceState.WAITING]
    status = h.emitted[0]
    assert isinstance(status, DeviceStatus)
    assert (status.device, status.driver) == ("car12-gps", "nmea")
    assert "waiting for the first fix" in status.detail
    assert h.tracker.state is DeviceState.WAITING


def test_connected_after_fixes(h: Harness) -> None:
    h.tracker.opened()
    h.run(60)
    assert h.states() == [DeviceState.WAITING, DeviceState.CONNECTED]
    assert h.tracker.state is DeviceState.CONNECTED
    assert len(h.statuses()) == 2  # waiting, then connected: never the same state twice in a row


def test_no_fix_after_no_fix_after_s_while_sentences_flow(h: Harness) -> None:
    h.tracker.opened()
    h.run(int(NO_FIX_S) - 1, fixes=False)
    assert h.states() == [DeviceState.WAITING]
    h.run(2, fixes=False)
    assert h.states() == [DeviceState.WAITING, DeviceState.NO_FIX]
    last = h.emitted[-1]
    assert isinstance(last, DeviceStatus) and "30 s" in last.detail


def test_no_fix_after_fixes_stop(h: Harness) -> None:
    h.tracker.opened()
    h.run(5)
    h.run(int(NO_FIX_S) + 1, fixes=False)
    assert h.states() == [DeviceState.WAITING, DeviceState.CONNECTED, DeviceState.NO_FIX]
    h.run(1)
    assert h.states() == [DeviceState.WAITING, DeviceState.CONNECTED, DeviceState.NO_FIX, DeviceState.CONNECTED]


def test_silent_after_silent_after_s_without_sentences(h: Harness) -> None:
    h.tracker.opened()
    h.run(5)
    h.run(int(SILENT_S) - 1, sentences=False, fixes=False)
    assert h.states() == [DeviceState.WAITING, DeviceState.CONNECTED]
    h.run(2, sentences=False, fixes=False)
    assert h.states() == [DeviceState.WAITING, DeviceState.CONNECTED, DeviceState.SILENT]
    assert "10 s" in h.emitted[-1].detail  # type: ignore[union-attr]
    h.run(1)
    assert h.states()[-1] is DeviceState.CONNECTED


def test_silent_when_nothing_is_ever_heard_after_open(h: Harness) -> None:
    h.tracker.opened()
    h.run(int(SILENT_S) + 1, sentences=False, fixes=False)
    assert h.states() == [DeviceState.WAITING, DeviceState.SILENT]


def test_garbage_bytes_do_not_keep_a_device_from_being_silent(h: Harness) -> None:
    h.tracker.opened()
    for _ in range(int(SILENT_S) + 2):
        h.counters = replace(h.counters, garbage_bytes=h.counters.garbage_bytes + 500, bytes=h.counters.bytes + 500)
        h.advance(1.0)
        h.tracker.evaluate()
    assert h.states() == [DeviceState.WAITING, DeviceState.SILENT]


def test_degraded_when_corrupt_outnumbers_valid(h: Harness) -> None:
    h.tracker.opened()
    h.run(3)  # 6 valid sentences in the window
    h.sentences(good=2, bad=9)  # 9 corrupt vs 8 valid
    h.advance(0.5)
    h.tracker.evaluate()
    assert h.states() == [DeviceState.WAITING, DeviceState.CONNECTED, DeviceState.DEGRADED]
    assert "baud rate" in h.emitted[-1].detail  # type: ignore[union-attr]


def test_not_degraded_below_five_corrupt_sentences(h: Harness) -> None:
    h.tracker.opened()
    h.sentences(good=0, bad=4)
    h.advance(0.5)
    h.tracker.evaluate()
    assert h.states() == [DeviceState.WAITING]


def test_not_degraded_when_valid_outnumber_corrupt(h: Harness) -> None:
    h.tracker.opened()
    h.run(3)
    h.sentences(good=8, bad=7)
    h.advance(0.5)
    h.tracker.evaluate()
    assert h.states() == [DeviceState.WAITING, DeviceState.CONNECTED]


def test_degraded_clears_once_the_corruption_leaves_the_window(h: Harness) -> None:
    h.tracker.opened()
    h.run(3)
    h.sentences(good=0, bad=20)
    h.tracker.evaluate()
    assert h.states()[-1] is DeviceState.DEGRADED
    h.run(int(ERROR_WINDOW_S) + 2)
    assert h.states() == [DeviceState.WAITING, DeviceState.CONNECTED, DeviceState.DEGRADED, DeviceState.CONNECTED]


def test_silent_clears_when_sentences_resume_before_the_first_fix(h: Harness) -> None:
    # BUG (base.py StateTracker.evaluate, the "waiting for the first fix" branch): it only sets
    # CONNECTED from None/DISCONNECTED, so a device that was SILENT keeps reporting "silent"
    # while valid sentences flow, until no_fix_after_s since open has passed.
    h.tracker.opened()
    h.run(int(SILENT_S) + 1, sentences=False, fixes=False)
    assert h.states()[-1] is DeviceState.SILENT
    h.run(3, fixes=False)  # 14 s after open: sentences again, still no fix, < no_fix_after_s
    assert h.tracker.state is not DeviceState.SILENT


def test_degraded_clears_before_the_first_fix(h: Harness) -> None:
    # Same branch as above: a burst of garbage right after open (port opened mid-sentence,
    # receiver booting) keeps the device "degraded" long after the line is clean.
    h.tracker.opened()
    h.sentences(good=0, bad=8)
    h.advance(0.5)
    h.tracker.evaluate()
    assert h.states() == [DeviceState.WAITING, DeviceState.DEGRADED]
    h.run(int(ERROR_WINDOW_S) + 2, fixes=False)  # clean sentences, receiver still acquiring
    assert h.tracker.state is not DeviceState.DEGRADED


def test_disconnected_on_closed_and_connected_again_on_reopen(h: Harness) -> None:
    h.tracker.opened()
    h.run(3)
    h.tracker.closed("port not found: unplugged, or wrong path?")
    assert h.states() == [DeviceState.WAITING, DeviceState.CONNECTED, DeviceState.DISCONNECTED]
    assert h.emitted[-1].detail.startswith("port not found")  # type: ignore[union-attr]
    h.advance(100)
    h.tracker.evaluate()  # a closed port is not evaluated: stays disconnected
    assert h.states()[-1] is DeviceState.DISCONNECTED
    h.tracker.opened()
    assert h.states() == [DeviceState.WAITING, DeviceState.CONNECTED, DeviceState.DISCONNECTED, DeviceState.WAITING]


def test_repeated_failures_to_open_emit_disconnected_once(h: Harness) -> None:
    for _ in range(5):
        h.tracker.closed("permission denied")
        h.advance(1.0)
    assert h.states() == [DeviceState.DISCONNECTED]


def test_status_is_emitted_only_on_change(h: Harness) -> None:
    h.tracker.opened()
    h.run(2)
    n = len(h.emitted)
    for _ in range(100):
        h.tracker.evaluate()
    assert len(h.emitted) == n
    h.run(30)
    assert len(h.emitted) == n  # a steady 1 Hz receiver: nothing to report
    h.run(int(SILENT_S) + 1, sentences=False, fixes=False)
    n = len(h.emitted)
    for _ in range(100):
        h.advance(0.5)
        h.tracker.evaluate()
    assert len(h.emitted) == n
    assert h.states() == [DeviceState.WAITING, DeviceState.CONNECTED, DeviceState.SILENT]
    pairs = [(r.state, r.detail) for r in h.statuses()]
    assert all(a != b for a, b in itertools.pairwise(pairs)), pairs


def test_status_carries_the_counters_of_the_moment(h: Harness) -> None:
    h.tracker.opened()
    h.run(int(NO_FIX_S) - 1, fixes=False)
    for _ in range(100):
        h.sentences(1)
        h.advance(0.25)
        h.tracker.evaluate()
        if h.tracker.state is DeviceState.NO_FIX:
            break
    last = h.emitted[-1]
    assert isinstance(last, DeviceStatus) and last.state is DeviceState.NO_FIX
    assert last.counters == h.counters
    assert last.counters.sentences > 0 and last.counters.fixes == 0


def test_a_subclass_judges_the_state_through_the_public_hook(h: Harness) -> None:
    """`judge` gets the clock and the opening time; `opened(evaluate=False)` leaves the first status to the caller."""
    seen: list[tuple[float, float]] = []

    class Judged(StateTracker):
        def judge(self, now: float, opened_at: float) -> tuple[DeviceState, str]:
            seen.append((now, opened_at))
            return DeviceState.DEGRADED, f"open for {now - opened_at:g} s"

    t = Judged("modem", "modbus", h.emitted.append, SILENT_S, NO_FIX_S, lambda: h.counters, clock=h.clock)
    t.opened(evaluate=False)
    assert h.emitted == [] and seen == []
    h.advance(2.0)
    t.evaluate()
    assert seen == [(1002.0, 1000.0)]
    assert [(r.state, r.detail) for r in h.statuses()] == [(DeviceState.DEGRADED, "open for 2 s")]
    t.closed("gone")
    t.evaluate()  # closed: not judged
    assert len(seen) == 1


# --- Backoff ---------------------------------------------------------------------------------


class Extreme(random.Random):
    """uniform() returns the low or the high end, to see the bounds."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def test_backoff_upper_bound_doubles_up_to_the_cap() -> None:
    b = Backoff(0.5, 30.0, rng=Extreme(high=True))
    assert [b.next_delay() for _ in range(9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_backoff_lower_bound_is_a_tenth_of_the_cap() -> None:
    b = Backoff(0.5, 30.0, rng=Extreme(high=False))
    assert [b.next_delay() for _ in range(8)] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.0, 3.0])


def test_backoff_delays_stay_between_a_tenth_of_the_cap_and_the_cap() -> None:
    b = Backoff(0.5, 30.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(200)]
    for n, d in enumerate(delays):
        cap = min(30.0, 0.5 * 2**n)
        assert cap / 10 <= d <= cap
    assert max(delays) <= 30.0
    assert min(delays[10:]) >= 3.0
    assert sum(delays[-50:]) / 50 > sum(delays[:3]) / 3  # grows


def test_backoff_reset_returns_to_small_delays() -> None:
    b = Backoff(0.5, 30.0, rng=random.Random(3))
    for _ in range(20):
        b.next_delay()
    assert b.next_delay() >= 3.0
    b.reset()
    assert b.next_delay() <= 0.5
    assert b.next_delay() <= 1.0


def test_backoff_many_attempts_do_not_overflow() -> None:
    b = Backoff(0.5, 600.0, rng=Extreme(high=True))
    for _ in range(10_000):
        d = b.next_delay()
    assert d == 600.0


# --- Link and the reconnect loop -------------------------------------------------------------

LINK_LOG = logging.getLogger("alkomd.drivers.test_link")


def link_messages(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LINK_LOG.name]


def test_link_logs_a_repeated_failure_once_reports_each_and_logs_the_recovery(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LINK_LOG.name)
    h = Harness()
    link = Link("gps0", LINK_LOG, Backoff(0.5, 30.0))
    link.start()
    for _ in range(3):
        link.down(h.tracker, LinkError("port not found", "cannot open /dev/ttyUSB0: port not found"))
    link.down(h.tracker, LinkError("permission denied"))
    assert not link.is_up and link.reconnects == 0
    link.up(h.tracker, "opened /dev/ttyUSB0")
    link.up(h.tracker, "opened /dev/ttyUSB0")  # already up: nothing
    assert link.is_up and link.reconnects == 1
    assert link_messages(caplog) == [
        (logging.WARNING, "gps0: cannot open /dev/ttyUSB0: port not found"),
        (logging.WARNING, "gps0: permission denied"),
        (logging.INFO, "gps0: opened /dev/ttyUSB0"),
    ]
    assert [(s.state, s.detail) for s in h.statuses()] == [
        (DeviceState.DISCONNECTED, "port not found"),
        (DeviceState.DISCONNECTED, "permission denied"),
        (DeviceState.WAITING, "port open, waiting for the first fix"),
    ]


def test_link_counts_a_reconnect_only_when_it_comes_up_after_being_down(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LINK_LOG.name)
    h = Harness()
    link = Link("modem", LINK_LOG, Backoff(0.5, 30.0))
    link.start()
    link.up(h.tracker, again="reachable again")  # the first time up: no reconnect, and `again` is not said
    assert link.reconnects == 0 and link_messages(caplog) == []
    link.down(h.tracker, LinkError("connection refused"))
    link.down(h.tracker, LinkError("connection refused"))
    link.up(h.tracker, again="reachable again")
    assert link.reconnects == 1
    assert link_messages(caplog) == [(logging.WARNING, "modem: connection refused"), (logging.INFO, "modem: reachable again")]
    link.down(h.tracker, LinkError("connection refused"))  # up in between: the same failure is news again
    assert link_messages(caplog)[-1] == (logging.WARNING, "modem: connection refused")
    link.start()  # a new run (the runtime restarted the driver): neither up nor down
    link.up(h.tracker, again="reachable again")
    assert link.reconnects == 1


@dataclass(frozen=True)
class LoopOptions:
    silent_after_s: float = 600.0
    no_fix_after_s: float = 600.0
    reconnect_max_s: float = 0.01  # the loop's waits stay a few milliseconds; nothing depends on them


class Scripted(Reconnecting[str]):
    """A driver whose transport follows a script: opens fail, then connections that carry data and are lost."""

    driver_name = "scripted"

    def __init__(self, opens: list[LinkError | str]) -> None:
        super().__init__("dev0", LoopOptions(), LINK_LOG)
        self.opens = opens
        self.closed: list[str] = []
        self.stopped_runs = 0
        self.stop = threading.Event()

    def open(self, stop: threading.Event) -> str | None:
        step = self.opens.pop(0)
        if isinstance(step, LinkError):
            raise step
        return step

    def opened_text(self) -> str:
        return "opened the script"

    def read(self, conn: str, stop: threading.Event, emit: Emit, tracker: StateTracker) -> None:
        tracker.saw_sentence()
        if not self.opens:
            self.stop.set()  # the last connection: stop while reading
            return
        raise LinkError(f"{conn} lost", f"lost {conn}")

    def close(self, conn: str) -> None:
        self.closed.append(conn)

    def counters(self) -> Counters:
        return Counters(reconnects=self.link.reconnects)

    def stopped(self, emit: Emit) -> None:
        self.stopped_runs += 1


def test_the_reconnect_loop_opens_reads_loses_and_opens_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LINK_LOG.name)
    refused = LinkError("refused", "cannot open: refused")
    d = Scripted([refused, refused, "conn1", "conn2"])
    records: list[Record] = []
    assert d.last_data() is None
    d.run(d.stop, records.append)  # in this thread: the script sets stop in its last read
    assert d.closed == ["conn1", "conn2"] and d.stopped_runs == 1
    assert link_messages(caplog) == [
        (logging.WARNING, "dev0: cannot open: refused"),
        (logging.INFO, "dev0: opened the script"),
        (logging.WARNING, "dev0: lost conn1"),
        (logging.INFO, "dev0: opened the script"),
    ]
    states = [(r.state, r.detail) for r in records if isinstance(r, DeviceStatus)]
    assert states == [
        (DeviceState.DISCONNECTED, "refused"),
        (DeviceState.WAITING, "port open, waiting for the first fix"),
        (DeviceState.DISCONNECTED, "conn1 lost"),
        (DeviceState.WAITING, "port open, waiting for the first fix"),
    ]
    assert d.counters().reconnects == 2 and d.last_data() is not None
    connected = [r.counters.reconnects for r in records if isinstance(r, DeviceStatus) and r.state is DeviceState.WAITING]
    assert connected == [1, 2], "the status that says open again carries the reconnect"
    # Two failed opens took the backoff two steps; conn1 carried data, so it started over: one step.
    assert d.link.backoff.attempt == 1


def test_the_reconnect_loop_ends_when_open_sees_stop() -> None:
    class StopsWhileOpening(Scripted):
        def open(self, stop: threading.Event) -> str | None:
            stop.set()
            return None

    d = StopsWhileOpening([])
    records: list[Record] = []
    d.run(d.stop, records.append)
    assert d.closed == [] and d.stopped_runs == 1 and records == []
