"""How `alkomctl ports` shows its report: for people (rich text), or as JSON."""

from __future__ import annotations

from dataclasses import asdict

from rich.console import Console
from rich.text import Text

from alkomd.daemon.ctl.ports.report import Finding, PortsReport

# USB-serial adapters a station uses (systemd/99-alkomd.rules keeps ModemManager off them).
ADAPTER_VENDORS = {"0403": "FTDI", "067b": "Prolific", "10c4": "Silicon Labs CP210x", "1a86": "WCH CH340"}


def report_dict(r: PortsReport) -> dict[str, object]:
    d = asdict(r)
    d["problems"] = r.problems
    return d


def render(r: PortsReport, console: Console) -> None:
    pr = console.print
    who = f"user {r.user} (groups {', '.join(r.groups)})"
    head = Text(f"Serial ports: {len(r.ports)}", style="bold")
    head.append(f"   {who}", style="dim")
    if r.config:
        head.append(f"   config {r.config}", style="dim")
    pr(head)
    if not r.ports:
        pr(Text("no serial port found: is the adapter plugged in? (dmesg | tail shows what the kernel saw)", style="yellow"))
    for p in r.ports:
        pr()
        line = Text(p.path, style="bold")
        if p.real != p.path:
            line.append(f" -> {p.real}")
        if not p.exists:
            line.append("  missing", style="red")
        elif p.description:
            line.append(f"  {p.description}")
        pr(line)
        rows: list[tuple[str, str]] = []
        if p.usb:
            usb = f"USB {p.usb}"
            vendor = ADAPTER_VENDORS.get(p.usb.split(":")[0])
            usb += f" ({vendor})" if vendor else ""
            if p.manufacturer or p.product:
                usb += f"  {p.manufacturer} {p.product}".rstrip()
            rows.append(("adapter", usb))
            rows.append(("serial no", p.serial_number or "- (no serial number: tell identical adapters apart by USB socket)"))
        if p.driver:
            rows.append(("driver", p.driver))
        if p.exists:
            rows.append(("stable name", "\n".join(p.stable) if p.stable else "- (no /dev/serial/by-id name: not a USB adapter?)"))
            you = "you can read and write it" if p.access else "you CANNOT open it"
            rows.append(("access", f"{p.mode} {p.owner}:{p.group}  ({you})"))
            if p.holders:
                held = []
                for h in p.holders:
                    s = f"{h.name} pid {h.pid} user {h.user}" + (" (locked)" if h.locked else "")
                    if h.alkomd:
                        s += f"  the alkomd daemon, [[device]] {h.device}" if h.device else "  the alkomd daemon"
                    held.append(s)
                rows.append(("held by", "\n".join(held)))
            else:
                rows.append(("held by", "nobody" + ("" if r.complete else " that this user can see")))
        if p.devices:
            rows.append(("config", ", ".join(f"[[device]] {d}" for d in p.devices)))
        rows.append(("listed from", ", ".join(p.sources)))
        for k, v in rows:
            first, *rest = v.split("\n")
            pr(Text(f"    {k:<12}{first}"))
            for more in rest:
                pr(Text(f"    {'':<12}{more}"))
        for f in p.findings:
            _finding(console, f, indent="    ")
    if r.findings:
        pr()
        pr(Text("System", style="bold"))
        for f in r.findings:
            _finding(console, f, indent="  ")
    pr()
    if r.problems:
        pr(Text(f"{r.problems} problem(s) found", style="bold red"))
    else:
        pr(Text("no problem found", style="green"))


def _finding(console: Console, f: Finding, indent: str) -> None:
    t = Text(indent)
    t.append("WARNING " if f.level == "warning" else "note    ", style="bold red" if f.level == "warning" else "cyan")
    t.append(f.text)
    console.print(t)
    if f.fix:
        console.print(Text(f"{indent}        fix: {f.fix}", style="dim" if f.level == "note" else ""))
