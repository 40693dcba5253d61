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
    """Adapters opened on first use and shared by every route of the process, each behind its
    rate limit and circuit breaker (esb/adapters/resilience.py)."""

    def __init__(self, project: Project, hooks: Hooks | None = None):
        self.project = project
        # the middleware: wraps each adapter (wrap_adapter: metrics, tracing), is told of breaker
        # changes (on_circuit) and rate-limit waits (on_rate_limit_wait)
        self.hooks = hooks
        self.wrap = hooks.wrap_adapter if hooks is not None else None
        self._open: dict = {}
        self._breakers: dict = {}
        self._lock, self._breakers_lock = threading.Lock(), threading.Lock()

    def circuit(self, name: str):
        """The circuit breaker of the adapter `name`, or None; made without opening the adapter."""
        with self._breakers_lock:
            if name not in self._breakers:
                from esb.adapters.resilience import breaker_for
                spec = self.project.adapters.get(name)
                breaker = breaker_for(spec) if spec is not None else None
                if breaker is not None and self.hooks is not None:
                    breaker.subscribe(self.hooks.on_circuit)
                self._breakers[name] = breaker
            return self._breakers[name]

    def __call__(self, name: str):
        adapter = self._open.get(name)
        if adapter is None:
            with self._lock:
                adapter = self._open.get(name)
                if adapter is None:
                    from esb.adapters.base import open_adapter
                    from esb.adapters.resilience import ResilientAdapter, bucket_for
                    spec = self.project.adapters[name]
                    adapter = open_adapter(spec, self.project.root)
                    breaker, bucket = self.circuit(name), bucket_for(spec)
                    if breaker is not None or bucket is not None:
                        adapter = ResilientAdapter(adapter, breaker, bucket,
                                                   self.hooks.on_rate_limit_wait if self.hooks else None)
                    if self.wrap is not None:
                        adapter = self.wrap(name, spec.kind, adapter)
                    self._open[name] = adapter
        return adapter

    def close(self) -> None:
        for adapter in self._open.values():
            adapter.close()
        self._open.clear()


class Runtime:
    """Runs routes of a project until stopped; `swap()` changes routes between messages (hot
    reload); `stop()` drains in-flight messages."""

    def __init__(self, project: Project, broker: Broker, routes: Iterable[str] | None = None, store=None,
                 owner: str | None = None, adapters=None, pollers: bool | str = False,
                 middleware: Iterable[Middleware] | None = None):
        from esb.store import owner_id
        self.project = project
        self.broker = broker
        self.selected = None if routes is None else list(routes)  # None: every route, also ones added later
        self.route_names = list(routes or project.routes)
        self.store = store
        self.hooks = Hooks([LogMiddleware()] if middleware is None else list(middleware))
        self._given_adapters = adapters
        self.adapters = adapters or AdapterPool(project, self.hooks)
        self._pools = [self.adapters]
        self.timer = Timer()
        self.owner = owner or owner_id()
        self.seal = load_key(project.root, project.settings.state_key)
        self.runners = [self._runner(project, n, self.adapters) for n in self.route_names]
        self.poll_mode = pollers
        self.pollers = self._pollers(project)
        self._stop_polling = threading.Event()
        self._poll_threads: list[threading.Thread] = []

    def _runner(self, project: Project, name: str, adapters) -> RouteRunner:
        return RouteRunner(project.routes[name], self.broker, adapters, self.store, self.owner, seal=self.seal,
                           hooks=self.hooks, timer=self.timer, delivery_limit=project.settings.delivery_limit,
                           max_body_bytes=project.settings.max_body_bytes)

    def _pollers(self, project: Project) -> list:
        """False: none; True: those feeding the routes that run (every one when all routes run); "all"."""
        if not self.poll_mode:
            return []
        feeding = None if self.poll_mode == "all" or self.selected is None else self.route_names
        from esb.runtime.schedule import schedulers  # scheduled routes fire beside the pollers, on the same thread plan
        scheduled = [project.routes[n] for n in (project.routes if feeding is None else feeding)]
        return _inbound_pollers(project, self.broker, feeding, self.hooks.on_poll, store=self.store, owner=self.owner) \
            + schedulers(scheduled, confirmed_publish(self.broker), self.store, self.owner)

    def start(self) -> None:
        self.broker.start()
        self.broker.declare(project_topology(self.project, self.route_names))
        for runner in self.runners:
            runner.start()
        self._start_polling()
        log.info("runtime_started", routes=self.route_names, pollers=[f"{p.adapter}.{p.inbound}" for p in self.pollers])

    def _start_polling(self) -> None:
        self._stop_polling = threading.Event()
        self._poll_threads = []
        for poller in self.pollers:
            thread = threading.Thread(target=poller.run, args=(self._stop_polling,), daemon=True,
                                      name=f"esb-poll-{poller.adapter}-{poller.inbound}")
            thread.start()
            self._poll_threads.append(thread)

    def _stop_pollers(self, deadline: float) -> None:
        self._stop_polling.set()
        for thread in self._poll_threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for poller in self.pollers:
            poller.close()

    def swap(self, project: Project, names: Iterable[str], changed: Iterable[str] = (),
             drain_timeout: float = 30.0) -> None:
        """Run `project` from now on, swapping the routes in `names` one by one: the old runner stops
        consuming and settles what it has in flight on its own definition, then the new one starts
        (the queue keeps what arrives meanwhile). Other routes run on, untouched."""
        names = list(names)
        running = {runner.route.name: runner for runner in self.runners}
        starting = [n for n in names if n in project.routes and (self.selected is None or n in self.selected)]
        pool = self._given_adapters or AdapterPool(project, self.hooks)
        if starting:
            self.broker.declare(project_topology(project, starting))
        for name in names:
            old = running.pop(name, None)
            if old is not None:
                old.drain(drain_timeout)
            if name in starting:
                running[name] = runner = self._runner(project, name, pool)
                runner.start()
        old_project, self.project = self.project, project
        self.runners = list(running.values())
        self.route_names = list(running)
        if pool not in self._pools:
            self._pools.append(pool)
        self._close_unused_pools()
        if self.poll_mode and _inbound_changed(old_project, project, set(changed)):
            self._stop_pollers(time.monotonic() + drain_timeout)
            self.pollers = self._pollers(project)
            self._start_polling()

    def _close_unused_pools(self) -> None:
        """An adapter pool no runner uses any more is closed (its routes were all swapped)."""
        used = {id(runner.adapters) for runner in self.runners} | {id(self._pools[-1])}
        for pool in [p for p in self._pools if id(p) not in used]:
            self._pools.remove(pool)
            if hasattr(pool, "close") and pool is not self._given_adapters:
                pool.close()

    def stop(self, drain_timeout: float = 30.0) -> None:
        deadline = time.monotonic() + drain_timeout
        self._stop_pollers(deadline)
        for runner in self.runners:
            runner.drain(max(0.0, deadline - time.monotonic()))
        self.timer.stop()  # pending give-backs are sent now, not after their pause
        for pool in self._pools:
            if hasattr(pool, "close"):
                pool.close()
        self.broker.stop()
        if self.store is not None:
            self.store.close()
        log.info("runtime_stopped")


def _inbound_changed(old: Project, new: Project, changed: set[str]) -> bool:
    """Whether an SFTP adapter with inbound pollers, or a route's schedule, was changed, added or removed."""
    def inbound(project: Project) -> dict:
        return {name: spec.path for name, spec in project.adapters.items() if spec.kind == "sftp" and spec.inbound}
    before, after = inbound(old), inbound(new)
    if {n: r.source.schedule for n, r in old.routes.items()} != {n: r.source.schedule for n, r in new.routes.items()}:
        return True  # a schedule added, removed or changed: its Scheduler is made afresh
    return before.keys() != after.keys() or any(path in changed for path in (*before.values(), *after.values())) \
        or any(path.startswith("config/") for path in changed)


def _inbound_pollers(project: Project, broker: Broker, routes: list[str] | None, on_round=None, store=None,
                     owner: str | None = None) -> list:
    """One poller per `inbound` entry of each SFTP adapter that feeds one of `routes` (None: every
    one); a lease in the store, held as `owner`, keeps one polling across workers and machines (a
    file lock, one per machine, without a store). A poller gets a confirmed-publish function, not
    the broker: adapters never see the runtime. The ledger is the store's (PostgreSQL) or a file."""
    from esb.adapters.sftp_poller import SftpPoller
    from esb.store import inbound_ledger
    publish = confirmed_publish(broker)
    sources = None if routes is None else [project.routes[name].source for name in routes]
    ledger = inbound_ledger(store, project.root / "var/sftp-inbound.sqlite3")
    leases = store.leases() if hasattr(store, "leases") else None
    return [SftpPoller(spec, name, project.root, publish, "var/sftp-inbound.sqlite3", on_round=on_round, ledger=ledger,
                       leases=leases, owner=owner)
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
