"""Makes the README's picture of the dispatcher console (`docs/console.png`) from a running demo, in headless chromium.

Runs `alkomctl demo` (broker, daemon, simulated radios, Polda node, console, scripted 110 calls),
waits until its second 110 call is offered and its first has escalated to the Polda (about 80 s),
opens the one-time link the demo prints in Debian's chromium driven by Playwright (headless, never
`playwright install`), opens that call, and writes the PNG. Then stops the demo (SIGINT, as Ctrl-C).

    python bench/screenshot_console.py [--out docs/console.png] [--width 1440] [--height 900]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import playwright.sync_api as pw

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[1]
CONSOLE_LINE = re.compile(r"^console: (http://127\.0\.0\.1:\d+/\S+)")
READY = ("call 110-0001 escalated at polres", "call 110-0002 offered at polres")
TIMEOUT_S = 240.0


class Demo:
    """`alkomctl demo` as a child process, its output read line by line in a thread."""

    def __init__(self, work: Path) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alkomd.daemon.ctl", "demo", "--units", "6", "--workdir", str(work)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, done: tuple[str, ...]) -> str:
        """Waits until a line starts with each of `done`; returns the console's URL."""
        end = time.monotonic() + TIMEOUT_S
        while time.monotonic() < end and self.proc.poll() is None:
            url = next((m.group(1) for ln in self.lines if (m := CONSOLE_LINE.match(ln))), None)
            if url and all(any(ln.startswith(d) for ln in self.lines) for d in done):
                return url
            time.sleep(0.5)
        raise SystemExit("screenshot_console: the demo did not get there:\n" + "\n".join(self.lines[-30:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def shoot(url: str, out: Path, width: int, height: int) -> None:
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu",
                                                                    "--disable-background-networking", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(30_000)
            page.goto(url)
            page.wait_for_selector("#link-state[data-state=up]")
            page.wait_for_selector("#queue tr[data-call='110-0002']")
            page.wait_for_selector("#map .leaflet-marker-icon")
            # Acknowledge all but the newest alarm, so that the alarm shows without hiding the map.
            while page.locator("#alarm li button.ack").count() > 1:
                page.locator("#alarm li button.ack").last.click()
            page.click("#queue tr[data-call='110-0002']")
            page.wait_for_selector("#call-detail:not([hidden])")
            page.wait_for_timeout(1500)  # the markers' and the countdowns' next redraw (a picture, not a test)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
        finally:
            browser.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "console.png")
    ap.add_argument("--width", type=int, default=1440)
    ap.add_argument("--height", type=int, default=900)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="alkomd-shot-") as tmp:
        demo = Demo(Path(tmp) / "demo")
        try:
            url = demo.wait_for(READY)
            shoot(url, args.out, args.width, args.height)
        finally:
            demo.stop()
    print(f"screenshot_console: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
