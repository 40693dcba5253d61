"""What `/readyz` says, kept as gauges so that one process can answer for all workers.

Each worker's probe loop sets `esb_component_up{component}` (broker, store, consumer:<route>) once
a second, and `esb_worker_ready` (1 when all of its components are up). The endpoint reads them
back from the registry it serves: in one process its own, under `--workers N` the sum of every
worker's files, so a worker that died or is restarting counts as not ready.
"""

from __future__ import annotations

import threading

import structlog
from prometheus_client import Gauge
from prometheus_client.registry import CollectorRegistry

from esb.runtime import names
from esb.runtime.topology import retry_delays_ms

log = structlog.get_logger("esb.health")
PROBE_EVERY = 1.0
DEPTH_EVERY = 15.0  # queue depths are sampled, not counted per message: each sample is a broker call
PROBE_KEY = ("esb-health", "probe")  # a store read that never matches a real route's record

COMPONENT_UP = Gauge("esb_component_up", "1 while a part a worker needs answers: broker, store, consumer:<route>",
                     ["component"], multiprocess_mode="livemin")
WORKER_READY = Gauge("esb_worker_ready", "Workers whose broker, consumers and store all answer",
                     multiprocess_mode="livesum")
QUEUE_DEPTH = Gauge("esb_queue_messages", "Ready messages of a route's queue, retry tier or dead-letter queue",
                    ["route", "queue", "kind"], multiprocess_mode="livemax")


def components(runtime) -> dict[str, bool]:
    """Each part this worker needs, and whether it answers now."""
    health = runtime.broker.health()
    consumers = health.get("consumers", {})
    found = {"broker": bool(health.get("connected"))}
    for runner in runtime.runners:
        found[f"consumer:{runner.route.name}"] = bool(consumers.get(names.route_queue(runner.route.name)))
    if runtime.store is not None:
        try:
            runtime.store.get(*PROBE_KEY)
            found["store"] = True
        except Exception:  # noqa: BLE001 - whatever the store raises, it does not answer
            found["store"] = False
    return found


class Probe:
    """Sets the health gauges of one worker until stopped; samples queue depths now and then."""

    def __init__(self, runtime):
        self.runtime = runtime
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="esb-health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        WORKER_READY.set(0)

    def _run(self) -> None:
        ticks, depth_every = 0, max(1, round(DEPTH_EVERY / PROBE_EVERY))
        while True:
            self.probe()
            if ticks % depth_every == 0:
                self.sample_depths()
            ticks += 1
            if self._stop.wait(PROBE_EVERY):
                return

    def probe(self) -> None:
        try:
            found = components(self.runtime)
        except Exception:  # noqa: BLE001 - a probe must never end the loop
            log.exception("health_probe_failed")
            found = {"broker": False}
        for name, up in found.items():
            COMPONENT_UP.labels(name).set(1 if up else 0)
        WORKER_READY.set(1 if all(found.values()) else 0)

    def sample_depths(self) -> None:
        for runner in self.runtime.runners:
            route = runner.route.name
            queues = [(names.route_queue(route), "route"), (names.dead_letter_queue(route), "dead_letter"),
                      *((names.retry_queue(route, ms), "retry") for ms in sorted(set(retry_delays_ms(runner.route))))]
            for queue, kind in queues:
                try:
                    depth = self.runtime.broker.queue_depth(queue)
                except Exception:  # noqa: BLE001 - a broker that does not answer is the probe's business
                    return
                if depth is not None:
                    QUEUE_DEPTH.labels(route, queue, kind).set(depth[0])


def readiness(registry: CollectorRegistry, workers: int) -> tuple[bool, dict]:
    """Whether every worker is ready, and a body saying which part is not."""
    ready_workers, down = 0.0, []
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == "esb_worker_ready":
                ready_workers += sample.value
            elif sample.name == "esb_component_up" and sample.value < 1:
                down.append(sample.labels["component"])
    ok = ready_workers >= workers and not down
    return ok, {"ready": ok, "workers_ready": int(ready_workers), "workers": workers, "not_ready": sorted(down)}
