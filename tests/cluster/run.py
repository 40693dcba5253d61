"""`make cluster-test`: two esb machines on a 3-node RabbitMQ cluster and PostgreSQL, while a
RabbitMQ node and then a machine are killed with SIGKILL.

1. A 3-node cluster on 127.0.0.1:5691-5693 (rabbit_cluster.py), a schema of its own in the PostgreSQL
   of ESB_CLUSTER_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test), and a stand-in
   ledger on a loopback port (esb.testing.ledger: it applies a POST once per Idempotency-Key).
2. Two project roots, one per machine, with the same route: POST the voucher to the ledger, then
   publish it to `cluster.out`. broker.url lists the three nodes (machine B starts from the second),
   broker.queues quorum, the postgres store, one ESB_SECURITY_STATE_KEY. Each machine is
   `esb run --workers 2` in a process group of its own and, with `unshare --uts`, a host name of its
   own, so the store sees two hosts: a dead machine's leases run out (120 s) rather than being taken
   over at once as a dead process of the same host would be (--same-host for that case).
3. Publish N messages with unique voucher numbers, with publisher confirms, retrying a message on
   the next node when its publish fails. At 30% kill -9 the node leading the route's quorum queue;
   at 60% kill -9 machine A (its supervisor and workers: the whole process group).
4. Wait (bounded) until every voucher is in the ledger and on `cluster.out` (drained as it comes),
   and then until nothing changes for 5 s, and count. Fails unless lost = 0, unexpected = 0, every
   key has exactly one effect, and every key has come out (duplicates are printed, not failed on).

    python tests/cluster/run.py [--messages 2000] [--rate 100] [--same-host]

Everything it starts (nodes, processes, temp folders, the schema) is removed at the end, also on
failure or Ctrl-C. Needs root (the RabbitMQ nodes run as the rabbitmq user via runuser).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pika
import pika.exceptions
import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT)]

from rabbit_cluster import ClusterError, RabbitCluster, wait_until  # noqa: E402

from esb.testing.ledger import StandInLedger  # noqa: E402

POSTGRES_URL = os.environ.get("ESB_CLUSTER_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROUTE_NAME = "cluster-relay"
IN, OUT, SINK = "cluster.in", "cluster.out", "cluster.out.all"
WORKERS = 2

ROUTE = f"""\
name: {ROUTE_NAME}
source: {{exchange: {IN}, binding_key: "#"}}
concurrency: 8
idempotency: {{key: voucher_no}}
{{retry}}steps:
  - label: post-voucher
    to: {{adapter: ledger, operation: create_voucher, into: receipt}}
  - label: posted
    publish: {{exchange: {OUT}, routing_key: posted}}
"""

ADAPTER = """\
name: ledger
kind: rest
base_url: {url}
timeout: 5s
idempotency_header: Idempotency-Key
operations:
  create_voucher: {{method: POST, path: /vouchers}}
"""


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- the machines ------------------------------------------------------------------------------

class Machine:
    """One `esb run` with a root of its own, in a process group of its own."""

    def __init__(self, name: str, root: Path, env: dict, host: str | None):
        self.name, self.root = name, root
        self.log_path = root / "esb-run.log"
        command = [sys.executable, "-m", "esb.cli.main", "--root", str(root), "--log-level", "warning", "run",
                   "--workers", str(WORKERS), "--metrics-listen", "off", "--no-pollers"]
        if host:  # a UTS namespace of its own: socket.gethostname() is `host` in this machine's processes
            command = ["unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$@"', "sh", *command]
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the supervisor and its workers at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):  # a worker the supervisor left behind
            os.killpg(self.process.pid, signal.SIGKILL)

    def tail(self, lines: int = 12) -> str:
        text = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        return "\n".join(f"    {line[:300]}" for line in text[-lines:])


def write_root(base: Path, name: str, urls: list[str], store_url: str, ledger_url: str, retry: str) -> Path:
    root = base / name
    files = {
        "routes/relay.yaml": ROUTE.replace("{retry}", f"retry: {retry}\n" if retry else ""),
        "adapters/ledger.yaml": ADAPTER.format(url=ledger_url),
        "config/esb.yaml": (f"broker: {{url: '{','.join(urls)}', queues: quorum}}\n"
                            f"store: {{kind: postgres, url: '{store_url}'}}\n"
                            "logging: {level: warning}\n"),
    }
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


# -- the broker side ---------------------------------------------------------------------------

class Publisher:
    """Blocking publishes with confirms; a failed publish is sent again through the next node."""

    def __init__(self, urls: list[str]):
        self.urls, self.turn = urls, itertools.cycle(range(len(urls)))
        self.channel = None
        self.connection = None
        self.failovers = 0

    def publish(self, body: bytes, message_id: str, give_up: float = 60.0) -> None:
        deadline = time.monotonic() + give_up
        while True:
            try:
                channel = self.channel or self._connect()
                channel.basic_publish(IN, "voucher", body, pika.BasicProperties(
                    delivery_mode=2, content_type="application/json", message_id=message_id), mandatory=True)
                return
            except (pika.exceptions.AMQPError, OSError) as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not publish {message_id} through any node: {error!r}") from error
                self.failovers += 1
                self.close()
                time.sleep(0.2)

    def _connect(self):
        for _ in self.urls:
            url = self.urls[next(self.turn)]
            try:
                self.connection = pika.BlockingConnection(pika.URLParameters(
                    url + "?connection_attempts=1&socket_timeout=3&blocked_connection_timeout=10"))
            except pika.exceptions.AMQPConnectionError:
                continue
            self.channel = self.connection.channel()
            self.channel.confirm_delivery()
            return self.channel
        raise pika.exceptions.AMQPConnectionError("no node took the connection")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()
        self.channel = self.connection = None


def on_any_node(urls: list[str], action):
    """action(channel) on the first node that answers."""
    last = None
    for url in urls:
        try:
            with pika.BlockingConnection(pika.URLParameters(url + "?connection_attempts=1&socket_timeout=3")) as c:
                return action(c.channel())
        except (pika.exceptions.AMQPError, OSError) as error:
            last = error
    raise ClusterError(f"no node answered: {last!r}")


def depth(urls: list[str], queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of `queue`."""
    ok = on_any_node(urls, lambda ch: ch.queue_declare(queue, passive=True))
    return ok.method.message_count, ok.method.consumer_count


def drain(urls: list[str], queue: str, quiet: float, with_headers: bool = False) -> list:
    """Take (and ack) what `queue` holds, until nothing comes for `quiet` seconds: bodies, or
    (message id, headers) with `with_headers`."""
    def take(channel):
        bodies = []
        for method, properties, body in channel.consume(queue, inactivity_timeout=quiet):
            if method is None:
                break
            bodies.append((properties.message_id, properties.headers or {}) if with_headers else body)
            channel.basic_ack(method.delivery_tag)
        channel.cancel()
        return bodies
    return on_any_node(urls, take)


# -- the count ---------------------------------------------------------------------------------

def tally(sent: list[str], effects: dict, outputs: list[bytes]) -> dict:
    """lost: sent, no effect; unexpected: an effect for a key never sent; effects per key by the
    voucher number in the posted body (so a repeat under another Idempotency-Key counts twice)."""
    per_key = collections.Counter(json.loads(body)["voucher_no"] for _method, _path, body in effects.values())
    out_keys = collections.Counter(json.loads(body)["voucher_no"] for body in outputs)
    sent_set = set(sent)
    return {
        "sent": len(sent),
        "lost": sorted(sent_set - set(per_key)),
        "unexpected": sorted(set(per_key) - sent_set),
        "not_once": {key: n for key, n in per_key.items() if n != 1},
        "effects": sum(per_key.values()),
        "outputs": len(outputs),
        "missing_outputs": sorted(sent_set - set(out_keys)),
        "duplicate_outputs": sum(n - 1 for n in out_keys.values() if n > 1),
    }


def report(figures: dict, events: list[str], requests: int, failovers: int, dead: int, seconds: float) -> bool:
    # A key with its effect but no output is lost too, to whoever consumes cluster.out.
    ok = not (figures["lost"] or figures["unexpected"] or figures["not_once"] or figures["missing_outputs"])
    rows = [
        ("messages sent (confirmed)", figures["sent"]),
        ("lost (sent, no ledger effect)", len(figures["lost"])),
        ("unexpected (effect, never sent)", len(figures["unexpected"])),
        ("keys with effects != 1", len(figures["not_once"])),
        ("ledger effects", figures["effects"]),
        ("ledger POSTs (repeats answered from its key)", requests),
        ("outputs", figures["outputs"]),
        ("keys without an output", len(figures["missing_outputs"])),
        ("duplicate outputs (at-least-once)", figures["duplicate_outputs"]),
        ("dead letters", dead),
        ("publisher failovers", failovers),
        ("seconds, first publish to quiet", f"{seconds:.1f}"),
    ]
    print("\ncluster test:")
    for event in events:
        print(f"  {event}")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for what in ("lost", "unexpected", "missing_outputs"):
        if figures[what]:
            print(f"  {what}: {', '.join(figures[what][:20])}{' ...' if len(figures[what]) > 20 else ''}")
    if figures["not_once"]:
        print(f"  effects != 1: {dict(list(figures['not_once'].items())[:20])}")
    print(f"\n{'PASS' if ok else 'FAIL'}: lost = {len(figures['lost'])}, unexpected = {len(figures['unexpected'])}, "
          f"keys with effects != 1: {len(figures['not_once'])}, keys without an output: "
          f"{len(figures['missing_outputs'])}", flush=True)
    return ok


# -- the run -----------------------------------------------------------------------------------

def run(args, cleanup: contextlib.ExitStack) -> bool:
    started = time.monotonic()
    log("starting a 3-node RabbitMQ cluster on 127.0.0.1:5691-5693")
    cluster = RabbitCluster()
    cleanup.callback(cluster.stop)
    cluster.start()
    urls = [cluster.url(node) for node in cluster.nodes]
    log(f"cluster up in {time.monotonic() - started:.0f}s: {', '.join(cluster.nodes)}")

    schema = f"esb_cluster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    cleanup.callback(drop_schema, schema)
    store_url = f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}options=-csearch_path%3D{schema}"

    ledger = StandInLedger(delay=0.02).start()
    cleanup.callback(ledger.stop)
    base = Path(tempfile.mkdtemp(prefix="esb-cluster-roots-"))
    cleanup.callback(shutil.rmtree, base, True)

    def declare_sink(channel):
        channel.exchange_declare(OUT, "topic", durable=True)
        channel.queue_declare(SINK, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(SINK, OUT, "#")
    on_any_node(urls, declare_sink)

    env = {**os.environ, "PYTHONPATH": str(ROOT), "ESB_SECURITY_STATE_KEY": uuid.uuid4().hex}
    env.pop("ESB_METRICS_LISTEN", None)
    machines = {}
    for name, order in (("a", urls), ("b", urls[1:] + urls[:1])):
        root = write_root(base, name, order, store_url, ledger.url, args.retry)
        machines[name] = Machine(name, root, env, None if args.same_host else f"esb-machine-{name}")
        cleanup.callback(machines[name].stop)
    try:
        wait_until(f"{2 * WORKERS} consumers on {ROUTE_NAME}", lambda: _consumers(urls) >= 2 * WORKERS, 90, 0.5)
    except ClusterError:
        for machine in machines.values():
            print(f"  machine {machine.name} (exit {machine.process.poll()}):\n{machine.tail()}")
        raise
    leader = cluster.leader(ROUTE_NAME)
    log(f"machines a and b consume ({2 * WORKERS} workers); {ROUTE_NAME} is led by {leader}")

    events: list[str] = []
    sent: list[str] = []
    publisher = Publisher(urls)
    first = time.monotonic()
    for i in range(args.messages):
        if i == int(args.messages * 0.3):
            pid = cluster.kill(leader)
            events.append(f"after {i} messages: kill -9 RabbitMQ node {leader} (pid {pid}), leader of {ROUTE_NAME}")
            log(events[-1])
        if i == int(args.messages * 0.6):
            machines["a"].kill()
            events.append(f"after {i} messages: kill -9 esb machine a (process group {machines['a'].process.pid})")
            log(events[-1])
        key = f"CT-{i:06d}"
        body = json.dumps({"voucher_no": key, "currency": "CNY", "total": f"{i % 997}.{i % 100:02d}",
                           "entries": [{"account": "6602.03", "amount": f"{i % 997}.{i % 100:02d}"}]})
        publisher.publish(body.encode(), key)
        sent.append(key)
        pause = first + (i + 1) / args.rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    publisher.close()
    log(f"published {len(sent)} in {time.monotonic() - first:.1f}s ({publisher.failovers} failovers); "
        f"waiting for the ledger and the outputs (at most {args.wait:.0f}s)")

    sent_set = set(sent)
    outputs: list[bytes] = []

    def done() -> bool:  # every voucher in the ledger and out on cluster.out (outputs drained as they come)
        outputs.extend(drain(urls, SINK, 0.5))
        posted = {json.loads(body)["voucher_no"] for _m, _p, body in list(ledger.effects.values())}
        return sent_set <= posted and sent_set <= {json.loads(body)["voucher_no"] for body in outputs}
    with contextlib.suppress(ClusterError):
        wait_until("every voucher in the ledger and out", done, args.wait, 1)
    quiet_since, last = time.monotonic(), (-1, -1)
    while time.monotonic() - quiet_since < 5:  # late duplicates: until nothing changes for 5 s
        outputs.extend(drain(urls, SINK, 0.5))
        now = (len(outputs), len(ledger.effects))
        if now != last:
            last, quiet_since = now, time.monotonic()
        time.sleep(0.5)
    seconds = time.monotonic() - first
    dead = drain(urls, f"{ROUTE_NAME}.dlq", 1, with_headers=True)
    for message_id, headers in dead:
        why = {k: v for k, v in headers.items() if k in _WHY}
        print(f"  dead letter {message_id}: {why}")
    figures = tally(sent, dict(ledger.effects), outputs)
    if figures["lost"]:
        print(f"  machine b's log, last lines:\n{machines['b'].tail()}")
    return report(figures, events, len(ledger.server.requests), publisher.failovers, len(dead), seconds)


_WHY = {"x-esb-error-class", "x-esb-reason", "x-esb-failed-step", "x-esb-attempts", "x-delivery-count",
        "x-death", "x-first-death-reason"}


def _consumers(urls: list[str]) -> int:
    with contextlib.suppress(pika.exceptions.ChannelClosedByBroker, ClusterError):
        return depth(urls, ROUTE_NAME)[1]
    return 0


def drop_schema(schema: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
        db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second published")
    parser.add_argument("--wait", type=float, default=200.0,
                        help="seconds to wait for the ledger after the last publish (a dead machine's lease is 120 s)")
    parser.add_argument("--same-host", action="store_true",
                        help="both machines keep this host's name (a dead machine's leases are taken over at once)")
    parser.add_argument("--retry", default="",
                        help="the route's retry policy as YAML, e.g. '{attempts: 1}' (default: esb's: 5 attempts, "
                             "tiers 1s 4s 16s 64s)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("make cluster-test needs root: its RabbitMQ nodes run as the rabbitmq user (runuser)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up on SIGTERM too
    with contextlib.ExitStack() as cleanup:
        try:
            ok = run(args, cleanup)
        except (ClusterError, RuntimeError, psycopg.Error) as error:
            print(f"cluster test could not run: {error}", file=sys.stderr)
            return 2
        finally:
            log("cleaning up: esb machines, RabbitMQ nodes, schema, temp folders")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
