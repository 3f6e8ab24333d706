"""The central broker's configuration under load: what TLS, passwords and a national ACL cost, and what a queue costs.

What, part A (throughput): 20,000 QoS 1 positions (260-byte JSON) from one `mosquitto_pub -l`
(MQTT 5) to one `mosquitto_sub -C` subscribed to everything, through three brokers started in
turn on free loopback ports (never 1883), interleaved, each repeat in a fresh order:
- plain: anonymous, no TLS, no ACL (the baseline);
- central: config/mosquitto/central.conf as shipped (TLS, password file, its settings) with an
  ACL of explicit blocks for 500 Polres, 34 Polda, Mabes (the shipped acl's scheme, generated);
- central+pattern: the same, with `pattern readwrite polri110/%u/#` in place of the 500 Polres'
  own-subtree lines (the alternative config/mosquitto/acl explains it does not use).
The C clients are used because paho (~11k msg/s QoS 1 end to end) would hide the broker.
Figure: messages per second from the first publish to the last delivery; ratio to plain, median
of per-repeat ratios.

What, part B (memory): the shipped central.conf's broker with 1 and then 4 absent persistent
MQTT 5 clients subscribed to everything; 50,000 positions published at QoS 1 are queued for
them. Figure: the broker's VmRSS growth per queued message (what max_queued_messages costs).

No goals: the figures size central.conf (max_queued_messages) and back the ACL choice.

    /work/venv/bin/python bench/bench_broker.py [--messages 20000] [--repeats 5] [--queued 50000] [--json]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "mosquitto"
PAYLOAD = (
    '{"unit":"R2-12","lat":0.5412345,"lon":123.0595123,"time":"2025-03-14T02:15:07.250Z","received":"2025-03-14T02:15:07.434Z",'
    '"speed_kmh":42.4,"course":87.4,"hdop":0.9,"sats":9,"fix":"3d","source":"car12-gps","msg_id":"0123456789abcdef0123456789abcdef",'
    '"alt":14.3}'
)
PUB, SUB = "jawa-timur/polres-007", "mabes"
WATCHERS = (SUB, "watch-1", "watch-2", "watch-3")  # absent subscribers of part B, one user each
TOPIC = f"polri110/{PUB}/unit/R2-12/position"
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def sh(*cmd: str | Path, cwd: Path) -> None:
    subprocess.run([str(c) for c in cmd], cwd=cwd, check=True, capture_output=True)


def pki(d: Path) -> None:
    sh("openssl", "req", "-x509", *EC, "-days", "2", "-subj", "/CN=bench-ca", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    sh("openssl", "req", *EC, "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    sh("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
       "-extfile", "server.ext", "-out", "server.crt", cwd=d)
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    sh(tool, "-c", "-b", "passwd", PUB, "pw", cwd=d)
    for user in WATCHERS:
        sh(tool, "-b", "passwd", user, "pw", cwd=d)


def national_acl(pattern: bool) -> str:
    """Blocks for 34 Polda of ~15 Polres each (510) and Mabes, as config/mosquitto/acl writes them."""
    out = ["user mabes", "topic readwrite polri110/#", ""]
    for user in WATCHERS[1:]:
        out += [f"user {user}", "topic read polri110/#", ""]
    if pattern:
        out += ["pattern readwrite polri110/%u/#", ""]
    names = ["jawa-timur"] + [f"polda-{i:02d}" for i in range(1, 34)]
    for polda in names:
        out += [f"user {polda}", f"topic readwrite polri110/{polda}/#", "topic write polri110/call/new", ""]
        for j in range(15):
            node = f"{polda}/polres-{j:03d}"
            out += (
                [f"user {node}"]
                + ([] if pattern else [f"topic readwrite polri110/{node}/#"])
                + [f"topic write polri110/{polda}/call/new", ""]
            )
    return "\n".join(out) + "\n"


def central_conf(d: Path, port: int) -> str:
    swaps = {
        "pid_file /run/mosquitto/mosquitto.pid": "",
        "password_file /etc/mosquitto/alkomd/passwd": f"password_file {d.parent}/passwd",
        "acl_file /etc/mosquitto/alkomd/acl": f"acl_file {d}/acl",
        "persistence_location /var/lib/mosquitto/": f"persistence_location {d}/",
        "log_dest file /var/log/mosquitto/mosquitto.log": f"log_dest file {d}/mosquitto.log",
        "listener 8883": f"listener {port} 127.0.0.1",
        "cafile /etc/mosquitto/certs/ca.crt": f"cafile {d.parent}/ca.crt",
        "certfile /etc/mosquitto/certs/server.crt": f"certfile {d.parent}/server.crt",
        "keyfile /etc/mosquitto/certs/server.key": f"keyfile {d.parent}/server.key",
    }
    lines = [swaps.get(ln, ln) for ln in (SHIPPED / "central.conf").read_text().splitlines()]
    return "user root\n" + "\n".join(lines) + "\n"


class Broker:
    def __init__(self, base: Path, kind: str) -> None:
        self.kind = kind
        self.dir = base / kind
        self.dir.mkdir(exist_ok=True)
        self.port = bl.free_port()
        conf = self.dir / "mosquitto.conf"
        if kind == "plain":
            conf.write_text(f"user root\nlistener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
                            "max_queued_messages 0\nmax_inflight_messages 100\n")
        else:
            (self.dir / "acl").write_text(national_acl(kind == "central+pattern"))
            conf.write_text(central_conf(self.dir, self.port))
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not bl.wait_port(self.port):
            self.stop()
            raise SystemExit(f"mosquitto ({kind}) did not start")

    def client_args(self, user: str) -> list[str]:
        if self.kind == "plain":
            return ["-h", "127.0.0.1", "-p", str(self.port)]
        return ["-h", "localhost", "-p", str(self.port), "--cafile", str(self.dir.parent / "ca.crt"), "-u", user, "-P", "pw"]

    def stop(self) -> None:
        bl.stop_pid(self.proc)


def throughput(b: Broker, n: int) -> float:
    """Messages/s from the first publish to the n-th delivery (QoS 1, MQTT 5, C clients)."""
    sub = subprocess.Popen(["mosquitto_sub", "-V", "mqttv5", "-q", "1", "-C", str(n), "-t", "polri110/#", *b.client_args(SUB)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # connected and subscribed
    data = (PAYLOAD + "\n").encode() * n
    t0 = time.perf_counter()
    pub = subprocess.run(["mosquitto_pub", "-V", "mqttv5", "-q", "1", "-l", "-t", TOPIC, *b.client_args(PUB)],
                         input=data, capture_output=True, timeout=300)
    try:
        sub.wait(120)
    except subprocess.TimeoutExpired:
        sub.kill()
        raise SystemExit(f"{b.kind}: the subscriber did not receive {n} messages") from None
    elapsed = time.perf_counter() - t0
    if pub.returncode or sub.returncode:
        raise SystemExit(f"{b.kind}: mosquitto_pub {pub.returncode} {pub.stderr[-200:]!r}, mosquitto_sub {sub.returncode}")
    return n / elapsed


def rss_kib(pid: int) -> int:
    return bl.proc_status(pid)["VmRSS"]


def queue_cost(base: Path, n: int, clients: int) -> float:
    """Bytes of broker RSS per message queued for `clients` absent persistent subscribers (one user each)."""
    b = Broker(base, "central")
    try:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        for user in WATCHERS[:clients]:
            c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=user, protocol=MQTTProtocolVersion.MQTTv5)
            c.username_pw_set(user, "pw")
            c.tls_set(ca_certs=str(base / "ca.crt"))
            c.connect("localhost", b.port, clean_start=False, properties=props)
            c.subscribe(f"polri110/{PUB}/#", qos=1)
            for _ in range(5):
                c.loop(0.1)
            c.disconnect()
            c.loop(0.1)
        time.sleep(0.5)
        before = rss_kib(b.proc.pid)
        data = (PAYLOAD + "\n").encode() * n
        subprocess.run(["mosquitto_pub", "-V", "mqttv5", "-q", "1", "-l", "-t", TOPIC, *b.client_args(PUB)], input=data,
                       capture_output=True, timeout=300, check=True)
        time.sleep(0.5)
        return (rss_kib(b.proc.pid) - before) * 1024 / n
    finally:
        b.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20000, help="per throughput run (< 65,535: mosquitto_pub -l stops there)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--queued", type=int, default=50000, help="messages queued for absent clients (part B)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for tool in ("mosquitto", "mosquitto_pub", "mosquitto_sub", "mosquitto_passwd", "openssl"):
        if not (shutil.which(tool) or Path("/usr/sbin", tool).exists()):
            raise SystemExit(f"{tool} not found: apt-get install -y mosquitto mosquitto-clients openssl")
    kinds = ["plain", "central", "central+pattern"]
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    ratios: dict[str, list[float]] = {k: [] for k in kinds[1:]}
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp:
        base = Path(tmp)
        pki(base)
        for r in range(args.repeats):
            order = kinds[:]
            random.Random(r).shuffle(order)
            got = {}
            for kind in order:
                b = Broker(base, kind)
                try:
                    got[kind] = throughput(b, args.messages)
                finally:
                    b.stop()
            for k in kinds:
                rates[k].append(got[k])
            for k in kinds[1:]:
                ratios[k].append(got[k] / got["plain"])
        queue = {k: queue_cost(base, args.queued, k) for k in (1, 4)}
    result = {
        "machine": bl.machine(),
        "messages": args.messages,
        "repeats": args.repeats,
        "throughput_msg_s": {k: bl.median(v) for k, v in rates.items()},
        "ratio_to_plain": {k: bl.median(v) for k, v in ratios.items()},
        "queued": args.queued,
        "rss_bytes_per_queued_message": queue,
    }
    if args.json:
        print(bl.dump_json(result))
        return 0
    print(f"QoS 1 end to end, {args.messages} x {len(PAYLOAD)}-byte positions, MQTT 5, mosquitto_pub -l -> mosquitto_sub; "
          f"median of {args.repeats} interleaved repeats")
    rows = [[k, bl.fmt_int(bl.median(rates[k])), "1.00" if k == "plain" else f"{bl.median(ratios[k]):.2f}"] for k in kinds]
    print(bl.table(["broker", "msg/s", "ratio to plain"], rows))
    print(f"\nbroker RSS growth per message queued for absent clients ({args.queued} positions, central.conf):")
    print(bl.table(["absent clients", "bytes/message", "per further client"],
                   [[1, f"{queue[1]:.0f}", ""], [4, f"{queue[4]:.0f}", f"{(queue[4] - queue[1]) / 3:.0f}"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
