"""Inbound SFTP: poll a remote directory, publish each file, and only once it is confirmed archive or delete it.

One round (`poll_once`), for an adapter's `inbound.NAME`:
    1. lead: take or renew the lease `sftp:<adapter>:<inbound>` in the store (esb.store.leases),
       held for LEASE_ROUNDS poll intervals; a poller that does not hold it skips the round. So
       one poller per inbound polls at a time across every worker of every machine sharing the
       store, and when the leader dies another takes over once its lease runs out (at once when
       it was a process of the same host). Without a store (a poller built alone), a file lock
       (fcntl.flock, next to the ledger) does this for the workers of one machine;
    2. list the directory of `poll` and keep the regular files matching its glob, oldest mtime first;
    3. for each file:
       - larger than `max_bytes` (default 50 MB): an error is logged and the file left where it is;
       - download it; if its size or mtime changed meanwhile it is still being written: leave it
         for the next round; compute its SHA-256;
       - unless the ledger already holds (adapter, inbound, path, size, mtime, sha256): publish it
         to `publish_to` (body = the file's bytes, content type from the extension, message id =
         the SHA-256, so the same bytes are always the same message; headers x-esb-file-name,
         -size, -mtime, -sha256) with the confirmed-publish function the runtime hands the poller
         (it returns once the broker confirmed), and write it to the ledger;
       - then move it into `archive` (created when missing; relative to the polled directory when
         not absolute; a name already there gets the hash added) or remove it (`delete: true`).
A crash between the confirm and the ledger write republishes the same message (the same id) on
the next round: at least once. A crash between the ledger write and the archive costs nothing:
the next round finds the file in the ledger and only archives it. Without `archive` or `delete`
files stay in place and the ledger alone (path, size and mtime) keeps them from being published
again. A failing server or broker ends the round; the files stay for the next one.

Fencing: before publishing a file and before archiving it, the leader renews its lease with
the token it holds; a leader that was paused past its lease (and replaced) finds that out there
and ends the round instead of acting beside the new one. What is left is the moment between that
check and the act: at worst the same file is published twice, under the same message id.

The ledger (esb.store.inbound) is the PostgreSQL store's table when the store is postgres, else a
SQLite file of this machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import fnmatch
import hashlib
import posixpath
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paramiko
import structlog

from esb.adapters.sftp import SftpConnection
from esb.adapters.spec import AdapterSpec, positive_seconds
from esb.errors import ConfigError, NotConfirmed, PermanentError, ProcessingError, Unroutable
from esb.message import BINARY, HEADER_PREFIX, JSON, TEXT, XML
from esb.store.inbound import InboundLedger, SqliteInboundLedger
from esb.store.leases import Leadership, Leases
from esb.store.owners import owner_id
from esb.store.records import StoreUnavailable

# publish(exchange, routing_key, body, content_type, headers, message_id): returns once the broker
# confirmed the message; raises Unroutable, NotConfirmed (or another Transient/PermanentError).
Publish = Callable[[str, str, bytes, str, Mapping[str, Any], str], None]

DEFAULT_EVERY = 60.0
DEFAULT_MAX_BYTES = 50_000_000
# The lease lasts this many poll intervals: a leader may miss a round or two (a slow listing, a
# store hiccup) without losing it, and a dead one is replaced within LEASE_ROUNDS + 1 intervals.
LEASE_ROUNDS = 3

FILE_NAME = HEADER_PREFIX + "file-name"      # the remote file's name, without its directory
FILE_SIZE = HEADER_PREFIX + "file-size"      # bytes
FILE_MTIME = HEADER_PREFIX + "file-mtime"    # the remote modification time, ISO 8601 UTC
FILE_SHA256 = HEADER_PREFIX + "file-sha256"  # lowercase hex of the body

_CONTENT_TYPES = {".xml": XML, ".json": JSON, ".txt": TEXT, ".csv": "text/csv"}
_GLOB_CHARS = set("*?[")

log = structlog.get_logger("esb.adapters.sftp_poller")

@dataclasses.dataclass(frozen=True)
class RemoteFile:
    path: str
    name: str
    size: int
    mtime: int


class _NotLeader(Exception):
    """The lease passed to another poller during the round (Leadership logged it)."""


class SftpPoller:
    """Polls one `inbound` entry of an sftp adapter; `run(stop_event)` repeats `poll_once` every
    `every`. With `leases` (the store's), it polls only while it holds the inbound's lease as `owner`."""

    def __init__(self, spec: AdapterSpec, inbound_name: str, root: Path, publish: Publish,
                 ledger_path: str | Path, lock: str | Path | None = None, on_round=None,
                 ledger: InboundLedger | None = None, leases: Leases | None = None, owner: str | None = None):
        if inbound_name not in spec.inbound:
            raise ConfigError(f"the adapter '{spec.name}' has no inbound '{inbound_name}'", path=spec.path)
        config = spec.inbound[inbound_name]
        self.adapter, self.inbound = spec.name, inbound_name
        self.directory, self.pattern = _poll(spec, inbound_name, str(config["poll"]))
        self.archive = _archive(spec, inbound_name, config, self.directory)
        self.delete = bool(config.get("delete"))
        self.every = positive_seconds(spec, "every", config.get("every"), DEFAULT_EVERY)
        self.max_bytes = int(config.get("max_bytes") or DEFAULT_MAX_BYTES)
        self.exchange = config["publish_to"]["exchange"]
        self.routing_key = config["publish_to"]["routing_key"]
        self.ledger_path = Path(root) / ledger_path
        self.ledger = ledger or SqliteInboundLedger(self.ledger_path)  # the store's (PostgreSQL), else this file
        self.lock_path = Path(root) / lock if lock else self.ledger_path.with_name(
            f"sftp-{spec.name}-{inbound_name}.lock")
        self._publish_confirmed = publish
        self._connection = SftpConnection(spec, Path(root))
        self._archive_ready = False
        self._log = log.bind(adapter=spec.name, inbound=inbound_name)
        self._on_round = on_round  # (adapter, inbound, files published, ok): what metrics count
        self.leadership = None if leases is None else Leadership(
            leases, f"sftp:{spec.name}:{inbound_name}", owner or owner_id(), round(LEASE_ROUNDS * self.every, 3),
            self._log, "sftp_poller")

    def poll_once(self) -> list[str]:
        """One round; returns the remote paths of the files published in it."""
        if self.leadership is not None:
            return self._round() if self._lead() else []
        with _exclusive(self.lock_path) as held:
            if not held:
                self._log.info("sftp_poll_skipped", reason="another poller holds the lock")
                return []
            return self._round()

    def _lead(self) -> bool:
        assert self.leadership is not None
        try:
            return self.leadership.lead()
        except StoreUnavailable as exc:  # not knowing whether it leads, it does not
            self._log.error("sftp_poll_failed", error_class="lease", error=exc.message)
            return False

    def _fence(self) -> None:
        """Before an act another leader must not repeat: still the leader, with the same token?"""
        if self.leadership is not None and not self.leadership.still_leading():
            raise _NotLeader

    def run(self, stop_event: threading.Event) -> None:
        """Poll until `stop_event` is set; a failing round is logged and the next one comes."""
        while not stop_event.is_set():
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - a poller must outlive any one bad round
                self._log.exception("sftp_poll_failed")
            stop_event.wait(self.every)

    def close(self) -> None:
        """Stop: release the lease (another machine's poller may take over at once) and disconnect."""
        try:
            if self.leadership is not None:
                self.leadership.step_down()
        except StoreUnavailable as exc:  # it runs out by itself
            self._log.error("sftp_lease_release_failed", error=exc.message)
        finally:
            self._connection.close()

    # -- one round -----------------------------------------------------------------------------
    def _round(self) -> list[str]:
        published: list[str] = []
        ok = False
        try:
            files = self._connection.run(self._listing, f"poll {self.inbound}: list {self.directory}")
            for file in files:
                self._take(file, self.ledger, published)
            ok = True
        except _NotLeader:
            pass
        except StoreUnavailable as exc:
            self._log.error("sftp_poll_failed", error_class="store", error=exc.message)  # the ledger or the lease
        except ProcessingError as exc:  # the server or the broker fails: the rest waits for the next round
            self._log.error("sftp_poll_failed", error_class=exc.error_class, error=exc.message)
        finally:
            if self._on_round is not None:
                self._on_round(self.adapter, self.inbound, len(published), ok)
        return published

    def _take(self, file: RemoteFile, ledger: InboundLedger, published: list[str]) -> None:
        """Publish one file unless the ledger has it, then archive or delete it."""
        if file.size > self.max_bytes:
            self._log.error("sftp_file_too_large", file=file.path, size=file.size, max_bytes=self.max_bytes)
            return
        moves = self.archive is not None or self.delete
        if not moves and ledger.seen(self.adapter, self.inbound, file):
            return
        try:
            data = self._connection.run(lambda sftp: _download(sftp, file, self.max_bytes), f"download {file.path}")
        except PermanentError as exc:  # e.g. permission denied on this one file: the others may do
            self._log.error("sftp_file_failed", file=file.path, error_class=exc.error_class, error=exc.message)
            return
        if data is None:
            self._log.info("sftp_file_changing", file=file.path)
            return
        sha256 = hashlib.sha256(data).hexdigest()
        if not ledger.published(self.adapter, self.inbound, file, sha256):
            self._fence()
            self._publish(file, data, sha256)
            ledger.record(self.adapter, self.inbound, file, sha256)  # before archiving: see the docstring
            published.append(file.path)
            self._log.info("sftp_file_published", file=file.path, size=file.size, message_id=sha256,
                           exchange=self.exchange, routing_key=self.routing_key)
        if moves:
            self._fence()
            self._finish(file, sha256)
            ledger.finished(self.adapter, self.inbound, file, sha256)

    def _listing(self, sftp: paramiko.SFTPClient) -> list[RemoteFile]:
        found = [RemoteFile(posixpath.join(self.directory, a.filename), a.filename, int(a.st_size or 0),
                            int(a.st_mtime or 0))
                 for a in sftp.listdir_attr(self.directory)
                 if fnmatch.fnmatchcase(a.filename, self.pattern) and a.st_mode is not None
                 and stat.S_ISREG(a.st_mode)]
        return sorted(found, key=lambda f: (f.mtime, f.name))

    def _publish(self, file: RemoteFile, data: bytes, sha256: str) -> None:
        headers = {FILE_NAME: file.name, FILE_SIZE: file.size, FILE_SHA256: sha256,
                   FILE_MTIME: datetime.fromtimestamp(file.mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        content_type = _CONTENT_TYPES.get(posixpath.splitext(file.name)[1].lower(), BINARY)
        try:
            self._publish_confirmed(self.exchange, self.routing_key, data, content_type, headers, sha256)
        except NotConfirmed as exc:
            raise NotConfirmed(f"{file.path}: {exc.message}") from None
        except Unroutable:
            raise Unroutable(f"{file.path}: nothing is bound to exchange '{self.exchange}' for key "
                             f"'{self.routing_key}'; the file stays until a queue is") from None

    def _finish(self, file: RemoteFile, sha256: str) -> None:
        if self.archive is not None:
            self._connection.run(lambda sftp: self._move_to_archive(sftp, file, sha256),
                                 f"archive {file.path} into {self.archive}")
            self._log.info("sftp_file_archived", file=file.path, archive=self.archive)
        else:
            self._connection.run(lambda sftp: _remove(sftp, file.path), f"delete {file.path}")
            self._log.info("sftp_file_deleted", file=file.path)

    def _move_to_archive(self, sftp: paramiko.SFTPClient, file: RemoteFile, sha256: str) -> None:
        assert self.archive is not None
        if not self._archive_ready:
            _make_dirs(sftp, self.archive)
            self._archive_ready = True
        target = posixpath.join(self.archive, file.name)
        if _exists(sftp, target):  # a name the server reuses (statement.xml every day): keep both
            stem, ext = posixpath.splitext(file.name)
            target = posixpath.join(self.archive, f"{stem}.{sha256[:12]}{ext}")
        try:
            sftp.posix_rename(file.path, target)
        except FileNotFoundError:
            if _exists(sftp, file.path):  # the archive is missing; a file already gone is done
                raise


# -- remote files ------------------------------------------------------------------------------
def _download(sftp: paramiko.SFTPClient, file: RemoteFile, max_bytes: int) -> bytes | None:
    """The file's bytes, or None when it changed while being read (still being written)."""
    with sftp.open(file.path, "rb") as remote:
        remote.prefetch(file.size)
        data = remote.read(max_bytes + 1)
    after = sftp.stat(file.path)
    if len(data) != file.size or after.st_size != file.size or int(after.st_mtime or 0) != file.mtime:
        return None
    return data


def _remove(sftp: paramiko.SFTPClient, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        sftp.remove(path)


def _exists(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.stat(path)
    except FileNotFoundError:
        return False
    return True


def _make_dirs(sftp: paramiko.SFTPClient, path: str) -> None:
    parts = [p for p in path.split("/") if p]
    for i in range(1, len(parts) + 1):
        prefix = ("/" if path.startswith("/") else "") + "/".join(parts[:i])
        if not _exists(sftp, prefix):
            sftp.mkdir(prefix)


# -- the lock ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[bool]:
    """Hold an exclusive flock on `path` if no one else does; yields whether it is held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)


# -- configuration -----------------------------------------------------------------------------
def _poll(spec: AdapterSpec, inbound: str, poll: str) -> tuple[str, str]:
    directory, pattern = posixpath.split(poll)
    if not pattern or _GLOB_CHARS & set(directory):
        raise ConfigError(f"the inbound '{inbound}' of '{spec.name}' polls '{poll}': write a directory and a "
                          "file pattern, with wildcards in the file name only", path=spec.path,
                          hint="e.g. /inbox/*.xml")
    return directory or ".", pattern


def _archive(spec: AdapterSpec, inbound: str, config: dict, directory: str) -> str | None:
    archive = config.get("archive")
    if archive and config.get("delete"):
        raise ConfigError(f"the inbound '{inbound}' of '{spec.name}' has both archive and delete: choose one",
                          path=spec.path)
    return posixpath.normpath(posixpath.join(directory, str(archive))) if archive else None

