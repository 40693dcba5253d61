"""One worker process: a broker connection, the routes it runs, their adapters and the store."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path

import structlog

from esb.loading.project import Project
from esb.runtime.broker import Broker, Topology, confirmed_publish
from esb.runtime.lanes import Timer
from esb.runtime.middleware import Hooks, LogMiddleware, Middleware
from esb.runtime.state import load_key
from esb.runtime.topology import route_topology
from esb.runtime.worker import RouteRunner

log = structlog.get_logger("esb.runtime")


def project_topology(project: Project, routes: Iterable[str]) -> Topology:
    """The topology of the given routes; an exchange takes the type of the route that consumes it."""
    merged = Topology()
    for name in routes:
        merged = merged.merge(route_topology(project.routes[name]))
    source_types = {r.source.exchange: r.source.exchange_type for r in project.routes.values() if r.source.exchange}
    exchanges = {name: source_types.get(name, kind) for name, kind in merged.exchanges}
    return Topology(tuple(exchanges.items()), merged.queues, merged.bindings)


class AdapterPool:
    """Adapters opened on first use and shared by every route of the process."""

    def __init__(self, project: Project, wrap=None):
        self.project = project
        self.wrap = wrap  # (adapter name, kind, adapter) -> adapter: middleware that times the calls
        self._open: dict = {}
        self._lock = threading.Lock()

    def __call__(self, name: str):
        adapter = self._open.get(name)
        if adapter is None:
            with self._lock:
                adapter = self._open.get(name)
                if adapter is None:
                    from esb.adapters.base import open_adapter
                    spec = self.project.adapters[name]
                    adapter = open_adapter(spec, self.project.root)
                    if self.wrap is not None:
                        adapter = self.wrap(name, spec.kind, adapter)
                    self._open[name] = adapter
        return adapter

    def close(self) -> None:
        for adapter in self._open.values():
            adapter.close()
        self._open.clear()


class Runtime:
    """Runs routes of a project until stopped; `stop()` drains in-flight messages."""

    def __init__(self, project: Project, broker: Broker, routes: Iterable[str] | None = None, store=None,
                 owner: str | None = None, adapters=None, pollers: bool | str = False,
                 middleware: Iterable[Middleware] | None = None):
        from esb.store import owner_id
        self.project = project
        self.broker = broker
        self.route_names = list(routes or project.routes)
        self.store = store
        self.hooks = Hooks([LogMiddleware()] if middleware is None else list(middleware))
        self.adapters = adapters or AdapterPool(project, self.hooks.wrap_adapter)
        self.timer = Timer()
        owner = owner or owner_id()
        self.seal = seal = load_key(project.root, project.settings.state_key)
        self.runners = [RouteRunner(project.routes[n], broker, self.adapters, store, owner, seal=seal,
                                    hooks=self.hooks, timer=self.timer,
                                    delivery_limit=project.settings.delivery_limit,
                                    max_body_bytes=project.settings.max_body_bytes)
                        for n in self.route_names]
        # pollers: False none; True those feeding the routes that run (every one when all routes run); "all"
        feeding = None if pollers == "all" or routes is None else self.route_names
        self.pollers = _inbound_pollers(project, broker, feeding) if pollers else []
        self._stop_polling = threading.Event()
        self._poll_threads: list[threading.Thread] = []

    def start(self) -> None:
        self.broker.start()
        self.broker.declare(project_topology(self.project, self.route_names))
        for runner in self.runners:
            runner.start()
        for poller in self.pollers:
            thread = threading.Thread(target=poller.run, args=(self._stop_polling,), daemon=True,
                                      name=f"esb-poll-{poller.adapter}-{poller.inbound}")
            thread.start()
            self._poll_threads.append(thread)
        log.info("runtime_started", routes=self.route_names, pollers=[f"{p.adapter}.{p.inbound}" for p in self.pollers])

    def stop(self, drain_timeout: float = 30.0) -> None:
        deadline = time.monotonic() + drain_timeout
        self._stop_polling.set()
        for thread in self._poll_threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for poller in self.pollers:
            poller.close()
        for runner in self.runners:
            runner.drain(max(0.0, deadline - time.monotonic()))
        self.timer.stop()  # pending give-backs are sent now, not after their pause
        if hasattr(self.adapters, "close"):
            self.adapters.close()
        self.broker.stop()
        if self.store is not None:
            self.store.close()
        log.info("runtime_stopped")


def _inbound_pollers(project: Project, broker: Broker, routes: list[str] | None) -> list:
    """One poller per `inbound` entry of each SFTP adapter that feeds one of `routes` (None: every
    one); a file lock keeps one per machine polling. A poller gets a confirmed-publish function, not
    the broker: adapters never see the runtime."""
    from esb.adapters.sftp_poller import SftpPoller
    publish = confirmed_publish(broker)
    sources = None if routes is None else [project.routes[name].source for name in routes]
    return [SftpPoller(spec, name, project.root, publish, "var/sftp-inbound.sqlite3")
            for spec in project.adapters.values() if spec.kind == "sftp" for name in spec.inbound
            if sources is None or _feeds(spec.inbound[name]["publish_to"], sources)]


def _feeds(publish_to: dict, sources: list) -> bool:
    """Whether a message published to `publish_to` reaches one of the routes' source bindings."""
    return any(source.exchange == publish_to["exchange"]
               and topic_matches(source.binding_key, publish_to["routing_key"]) for source in sources)


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: `*` is one dot-separated word, `#` zero or more."""
    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])
    return match(pattern.split("."), key.split("."))


def open_store_for(project: Project):
    from esb.store import open_store
    s = project.settings
    path = s.store_path if Path(s.store_path).is_absolute() else str(project.root / s.store_path)
    return open_store(s.store_kind, path, s.store_url)
