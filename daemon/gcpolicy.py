"""When the cyclic garbage collector runs: never a full collection in the middle of a call, one on a timer instead.

CPython starts a full (generation 2) collection on its own once enough objects survived the younger
generations; it walks every tracked object. A Polda or Mabes following 50,000 units holds a few
hundred thousand of them: measured, one full collection stops the event loop for about 30 ms, so a
call that arrives during one waits that long (`bench/bench_calls.py` showed it as the p99 and max).
Unit snapshots are freed by reference counting (they hold no cycles), so nothing needs the automatic
full collection promptly. The policy:

- after start-up, what exists then (modules, the configuration, the jurisdiction polygons, the
  units and calls read from the store) is collected once and frozen: later collections skip it;
- the young generations keep their automatic collections (well under a millisecond each);
- the automatic full collection is switched off (its trigger count is out of reach) and the
  daemon runs one every FULL_INTERVAL_S instead, from its event loop, logging how long it took when
  that was long. Garbage in cycles therefore lives at most that long.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)

FULL_INTERVAL_S = 300.0
YOUNG_THRESHOLDS = (2000, 20)  # new objects before a generation-0 collection; those before a generation-1 one
NO_AUTOMATIC_FULL = 1 << 30  # generation-1 collections before CPython considers a full one by itself
SLOW_FULL_MS = 50.0


def settle() -> None:
    """Start-up is over: collect and freeze what exists, and take full collections off the automatic schedule."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*YOUNG_THRESHOLDS, NO_AUTOMATIC_FULL)
    log.debug("gc: %d start-up objects frozen; full collections every %.0f s", gc.get_freeze_count(), FULL_INTERVAL_S)


def collect_full() -> None:
    """The scheduled full collection."""
    t0 = time.perf_counter()
    found = gc.collect()
    ms = (time.perf_counter() - t0) * 1000.0
    if ms >= SLOW_FULL_MS:
        log.info("gc: a full collection took %.0f ms (%d unreachable objects)", ms, found)
