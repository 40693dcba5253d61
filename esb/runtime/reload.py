"""Hot reload: a changed project is validated whole, then only the routes it affects are swapped.

Triggers: the files of routes/*.yaml, adapters/, transformers/ and config/ are compared every
`every` seconds (their SHA-1: a project is a few hundred small files, and polling needs neither a
watcher library nor inotify limits in a container), and SIGHUP (`esb reload`) checks at once.

A project that does not load is refused as a whole: the running routes go on unchanged, and each
problem (path:line) goes to the log, the status file (`esb status`, `esb reload`) and a metric
(through the middleware's `on_reload`). It is tried again when the files change again.

A route is affected when it is new or removed, when its own file changed, when a changed file is
named in it (a mapping, a function, a schema), or when an adapter it calls changed (its file, or
a file named in it: a WSDL, a key). A change in config/ affects every route. The runtime swaps the
affected routes one by one: the old runner stops consuming and finishes what it has in flight on
the definition it started with (its queue keeps the rest), then the new one starts consuming.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import structlog

from esb.errors import ConfigErrors

log = structlog.get_logger("esb.reload")
WATCHED = ("adapters", "transformers", "config")  # every file below these; routes/: its *.yaml files
STATUS_FOLDER = "var/run"
PID_FILE = "var/run/esb.pid"  # the `esb run` process of the project (the supervisor under --workers N)


def snapshot(root: Path) -> dict[str, str]:
    """{relative path: SHA-1 of the content} of every file a project is loaded from."""
    paths = [p for pattern in ("*.yaml", "*.yml") for p in (root / "routes").glob(pattern)]
    for folder in WATCHED:
        paths += [p for p in (root / folder).rglob("*") if p.is_file() and not _scratch(p.relative_to(root))]
    found = {}
    for path in paths:
        try:
            found[path.relative_to(root).as_posix()] = hashlib.sha1(path.read_bytes()).hexdigest()
        except OSError:
            continue  # removed while we looked: the next look sees it gone
    return found


def _scratch(path: Path) -> bool:
    """Files no project is loaded from: Python's bytecode cache (loading a function file writes
    one), editors' swap and backup files, hidden files."""
    return "__pycache__" in path.parts or any(part.startswith(".") for part in path.parts) \
        or path.name.endswith(("~", ".pyc", ".swp"))


def config_hash(files: dict[str, str]) -> str:
    """One short hash of the whole loaded configuration (shown by metrics and `esb status`)."""
    return hashlib.sha1(json.dumps(sorted(files.items())).encode()).hexdigest()[:12]


def changed_files(old: dict[str, str], new: dict[str, str]) -> set[str]:
    return {path for path in old.keys() | new.keys() if old.get(path) != new.get(path)}


def affected_routes(old_project, new_project, changed: set[str]) -> set[str]:
    """The names of the routes to swap, add or remove for `changed` files (see the module's docstring)."""
    names = set(old_project.routes) | set(new_project.routes)
    if any(path.startswith("config/") for path in changed):
        return names
    changed_adapters = {name for project in (old_project, new_project) for name, spec in project.adapters.items()
                        if _touched(project.root, spec.path, changed)}
    found = set()
    for name in names:
        old, new = old_project.routes.get(name), new_project.routes.get(name)
        if old is None or new is None or _touched(new_project.root, new.path, changed) \
                or old.path != new.path or set(new.adapters) & changed_adapters:
            found.add(name)
    return found


def _touched(root: Path, path: str, changed: set[str]) -> bool:
    """Whether the file at `path` changed, or names a changed file (by its path or its file name)."""
    if path in changed:
        return True
    try:
        text = (root / path).read_text(errors="replace")
    except OSError:
        return True
    return any(other in text or Path(other).name in text for other in changed)


@dataclasses.dataclass(frozen=True)
class ReloadResult:
    outcome: str                       # "loaded" (at start), "reloaded", "refused" or "unchanged"
    config_hash: str
    swapped: tuple[str, ...] = ()      # routes swapped, added or removed
    errors: tuple[str, ...] = ()       # path:line:col: what — for a refused project
    at: float = 0.0


class Reloader:
    """Watches the project's files and reloads `runtime` when they change or when asked."""

    def __init__(self, runtime, every: float = 1.0, load=None):
        from esb.loading.project import load_project
        self.runtime, self.every = runtime, every
        self.load = load or (lambda: load_project(runtime.project.root))
        self.root = Path(runtime.project.root)
        self.files = snapshot(self.root)       # what the running routes were loaded from
        self._refused: dict[str, str] | None = None  # files of the last refused attempt: not retried as is
        self.requested = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="esb-reload", daemon=True)
        self.last = ReloadResult("loaded", config_hash(self.files), at=time.time())

    def start(self) -> None:
        self.runtime.hooks.on_reload(self.last)
        self._write_status()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.requested.set()
        self._thread.join(5)
        _status_path(self.root).unlink(missing_ok=True)

    def request(self) -> None:
        """Check now (SIGHUP): safe to call from a signal handler."""
        self.requested.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            asked = self.requested.wait(self.every if self.every > 0 else None)
            self.requested.clear()
            if self._stop.is_set():
                return
            try:
                self.check(forced=asked)
            except Exception:  # noqa: BLE001 - a reload bug must not end the watcher or the worker
                log.exception("reload_failed")

    def check(self, forced: bool = False) -> ReloadResult:
        """Reload if the files changed (or `forced`, e.g. SIGHUP after a refused attempt)."""
        with self._lock:
            files = snapshot(self.root)
            changed = changed_files(self.files, files)
            if not changed:
                # asked, or a refused change was undone: say the files are what runs
                if forced or self._refused is not None:
                    self._refused = None
                    return self._record(ReloadResult("unchanged", config_hash(self.files), at=time.time()))
                return self.last
            if files == self._refused and not forced:
                return self.last  # refused as it is: tried again when a file changes (or when asked)
            return self._reload(files, changed)

    def _reload(self, files: dict[str, str], changed: set[str]) -> ReloadResult:
        digest = config_hash(files)
        try:
            project = self.load()
        except ConfigErrors as exc:
            self._refused = files
            errors = tuple(str(e) for e in exc.errors)
            for error in errors:
                log.error("reload_refused", problem=error)
            log.error("reload_kept_running_routes", problems=len(errors), config_hash=config_hash(self.files))
            return self._record(ReloadResult("refused", digest, errors=errors, at=time.time()))
        swapped = tuple(sorted(affected_routes(self.runtime.project, project, changed)))
        self.runtime.swap(project, swapped, changed)
        self.files, self._refused = files, None
        log.info("reloaded", swapped=list(swapped), changed=sorted(changed), config_hash=digest)
        return self._record(ReloadResult("reloaded", digest, swapped=swapped, at=time.time()))

    def _record(self, result: ReloadResult) -> ReloadResult:
        self.last = result
        self.runtime.hooks.on_reload(result)
        self._write_status(result)
        return result

    def _write_status(self, result: ReloadResult | None = None) -> None:
        """var/run/reload-<pid>.json: what `esb reload` waits for and `esb status` shows."""
        result = result or self.last
        # config_hash: what the routes run on (a refused change's files are not it)
        status = {"pid": os.getpid(), "outcome": result.outcome, "config_hash": config_hash(self.files),
                  "swapped": list(result.swapped), "errors": list(result.errors), "at": result.at,
                  "routes": sorted(self.runtime.project.routes) if self.runtime.project else []}
        path = _status_path(self.root)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(status))
        temporary.replace(path)


def _status_path(root: Path, pid: int | None = None) -> Path:
    return root / STATUS_FOLDER / f"reload-{pid or os.getpid()}.json"


def statuses(root: Path) -> list[dict]:
    """The reload status of every running worker of the project at `root`."""
    found = []
    for path in sorted((root / STATUS_FOLDER).glob("reload-*.json")):
        try:
            status = json.loads(path.read_text())
            os.kill(status["pid"], 0)  # a worker that is gone left its file behind: skip it
        except (OSError, ValueError, KeyError):
            continue
        found.append(status)
    return found
