"""A real SFTP server on loopback for tests and `esb demo`: OpenSSH's sshd with internal-sftp.

    with SftpServer() as server:                      # a fresh directory served as "/"
        (server.root / "inbox").mkdir()
        settings = server.adapter_settings()          # host, port, username, private_key, known_hosts
        ...
        server.drop_connections()                     # kill every open session (a network failure)

How it runs here (checked on Debian 12, OpenSSH 9.2, as root in a container):
- `/usr/sbin/sshd -D -e -f CONFIG` on 127.0.0.1 and a free port, with a host key and a client
  key made for this server by ssh-keygen (both Ed25519) in a temporary directory, together with
  the config, authorized_keys, known_hosts, the pid file and sshd's log.
- Run as root, the login user is root with key authentication only (`PermitRootLogin
  prohibit-password`): root has no password here and setting one would change the machine, so
  password authentication is off. Sessions are sftp only (`ForceCommand internal-sftp`) and
  chrooted to `root` (`ChrootDirectory`), so a client sees `root/outbox` as `/outbox`, as the
  sample adapter does. sshd refuses a chroot unless every directory on the way to it is owned by
  root and writable by nobody else, and /tmp is world-writable: without `root_dir` the server
  makes a directory under /run (or the home directory) instead; a `root_dir` that does not
  qualify is refused with a sentence saying why.
- Run as another user, sshd can log in only that user and cannot chroot: `root` is then served
  under its own absolute path (`remote_root`); `remote(path)` gives the name a client must use.
- sshd needs /run/sshd (its privilege-separation directory) to exist; `start` creates it.
- sshd is installed by `make setup` (Debian package openssh-server); `SshdMissing` says so.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
HOST = "127.0.0.1"
START_TIMEOUT = 10.0


class SshdMissing(RuntimeError):
    """OpenSSH's server is not installed."""


class SftpServer:
    """OpenSSH's sshd serving `root` over SFTP on 127.0.0.1; `stop()` removes what it made."""

    def __init__(self, root_dir: str | os.PathLike | None = None):
        self._given_root = Path(root_dir) if root_dir is not None else None
        self.host = HOST
        self.port = 0
        self.username = pwd.getpwuid(os.geteuid()).pw_name
        self.chrooted = os.geteuid() == 0
        self.root: Path | None = None
        self._work: Path | None = None
        self._made_root: Path | None = None
        self._process: subprocess.Popen | None = None

    # -- what clients need ---------------------------------------------------------------------
    @property
    def client_key_path(self) -> Path:
        return self._need_work() / "client_key"

    @property
    def known_hosts_path(self) -> Path:
        return self._need_work() / "known_hosts"

    @property
    def known_hosts_line(self) -> str:
        return self.known_hosts_path.read_text().strip()

    @property
    def host_key_fingerprint(self) -> str:
        return _fingerprint(self._need_work() / "host_key.pub")

    @property
    def log_path(self) -> Path:
        return self._need_work() / "sshd.log"

    @property
    def remote_root(self) -> str:
        """What a client calls `root`: "/" when chrooted, else its absolute path."""
        return "/" if self.chrooted else str(self._need_root())

    def remote(self, path: str) -> str:
        """The remote name of `path` (relative to `root`): remote("outbox/a.xml") -> "/outbox/a.xml"."""
        return posixpath.join(self.remote_root, path.lstrip("/"))

    def adapter_settings(self) -> dict:
        """Settings for an `sftp` adapter that talks to this server (absolute file paths)."""
        return {"host": self.host, "port": self.port, "username": self.username,
                "private_key": str(self.client_key_path), "known_hosts": str(self.known_hosts_path)}

    def authorize_key(self, public_key: str) -> None:
        """Let one more client key in (sshd reads authorized_keys at each login)."""
        with open(self._need_work() / "authorized_keys", "a") as file:
            file.write(public_key.strip() + "\n")

    def make_key(self, name: str, kind: str = "ed25519", *, authorize: bool = False) -> Path:
        """A new client key pair in the server's directory; returns the private key's path."""
        path = self._need_work() / name
        args = ["-t", kind] + (["-b", "2048"] if kind == "rsa" else [])
        _run([SSH_KEYGEN, "-q", *args, "-N", "", "-C", f"esb-{name}", "-f", str(path)])
        if authorize:
            self.authorize_key((path.parent / f"{name}.pub").read_text())
        return path

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> SftpServer:
        if not os.access(SSHD, os.X_OK):
            raise SshdMissing(f"OpenSSH's server ({SSHD}) is not installed: run `make setup`, which installs "
                              "the Debian package openssh-server")
        self._work = Path(tempfile.mkdtemp(prefix="esb-sftpd-"))
        try:
            self.root = self._prepare_root()
            self._make_keys()
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            self.drop_connections()
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for path in (self._work, self._made_root):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
        self._work = self._made_root = None

    def drop_connections(self) -> int:
        """Kill every session sshd has open, as a network failure would; returns how many processes died.

        The deepest processes die first and each parent reaps its own (sshd's session processes
        exit when their child does): nothing is left to init as a zombie. The listener stays up,
        so the next connection succeeds.
        """
        if self._process is None:
            return 0
        killed, deadline = 0, time.monotonic() + 5
        while (tree := _tree(self._process.pid)) and time.monotonic() < deadline:
            parents = {ppid for ppid, _ in tree.values()}
            for pid, (_, state) in tree.items():
                if state != "Z" and pid not in parents:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        killed += 1
            time.sleep(0.01)
        return killed

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> SftpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SftpServer({self.username}@{self.host}:{self.port}, root={self.root})"

    # -- setting up ----------------------------------------------------------------------------
    def _prepare_root(self) -> Path:
        if self._given_root is not None:
            root = self._given_root.resolve()
            root.mkdir(parents=True, exist_ok=True)
            if self.chrooted and (bad := _unfit_for_chroot(root)):
                raise ValueError(f"sshd cannot chroot to {root}: {bad} must be owned by root and writable by "
                                 "nobody else (leave root_dir out and the server makes a directory that is)")
            return root
        parent = next((p for p in (Path("/run"), Path.home()) if p.is_dir() and not _unfit_for_chroot(p)), None)
        if self.chrooted and parent is None:
            raise RuntimeError("no directory fit for sshd's chroot was found (tried /run and the home directory)")
        self._made_root = Path(tempfile.mkdtemp(prefix="esb-sftp-root-", dir=parent if self.chrooted else None))
        self._made_root.chmod(0o755)
        return self._made_root

    def _make_keys(self) -> None:
        work = self._need_work()
        for name in ("host_key", "client_key"):
            _run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", f"esb-{name}", "-f", str(work / name)])
        (work / "authorized_keys").write_text((work / "client_key.pub").read_text())

    def _launch(self) -> None:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        for _ in range(3):  # the free port may be taken between choosing and binding it
            self.port = _free_port()
            config = self._need_work() / "sshd_config"
            config.write_text(self._config())
            _run([SSHD, "-t", "-f", str(config)])
            with open(self.log_path, "ab") as log:
                self._process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                                 stdout=log, stderr=log, start_new_session=True)
            if self._wait_ready():
                self._write_known_hosts()
                return
            self._process.wait(5)
            self._process = None
        raise RuntimeError(f"sshd did not start; its log says:\n{self.log()[-2000:]}")

    def _config(self) -> str:
        work = self._need_work()
        lines = [
            f"ListenAddress {self.host}", f"Port {self.port}", f"HostKey {work / 'host_key'}",
            f"PidFile {work / 'sshd.pid'}", f"AuthorizedKeysFile {work / 'authorized_keys'}",
            "StrictModes no", "UsePAM no", "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
            "AllowTcpForwarding no", "X11Forwarding no", "PermitTTY no", "PrintMotd no", "UseDNS no",
            "MaxStartups 100", "MaxSessions 100", "LoginGraceTime 30", "LogLevel INFO",
            "Subsystem sftp internal-sftp",
        ]
        if self.chrooted:
            lines += [f"ChrootDirectory {self._need_root()}", "ForceCommand internal-sftp"]
        else:
            lines += [f"ForceCommand internal-sftp -d {self._need_root()}"]
        if _sshd_version() >= (9, 8):
            # 9.8 began to penalise addresses whose connections fail auth or time out; the tests do
            # that on purpose from 127.0.0.1 and would lock themselves out.
            lines.append("PerSourcePenalties no")
        return "\n".join(lines) + "\n"

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def _write_known_hosts(self) -> None:
        kind, key = (self._need_work() / "host_key.pub").read_text().split()[:2]
        self.known_hosts_path.write_text(f"[{self.host}]:{self.port} {kind} {key}\n")

    def _need_work(self) -> Path:
        if self._work is None:
            raise RuntimeError("the SFTP server is not started")
        return self._work

    def _need_root(self) -> Path:
        if self.root is None:
            raise RuntimeError("the SFTP server is not started")
        return self.root


def _unfit_for_chroot(path: Path) -> Path | None:
    """The first directory on the way to `path` that sshd would refuse as part of a chroot."""
    for part in [*reversed(path.parents), path]:
        st = part.stat()
        if st.st_uid != 0 or st.st_mode & 0o022:
            return part
    return None


def _tree(root: int) -> dict[int, tuple[int, str]]:
    """Every process below `root`, read from /proc: pid -> (parent pid, state letter)."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            table[int(entry.name)] = (int(fields[1]), fields[0])
    below, todo = {}, [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, state) in table.items():
            if ppid == parent and pid not in below:
                below[pid] = (ppid, state)
                todo.append(pid)
    return below


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _sshd_version() -> tuple[int, int]:
    out = subprocess.run([SSHD, "-V"], capture_output=True, text=True, timeout=10)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", out.stderr + out.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _fingerprint(public_key: Path) -> str:
    return _run([SSH_KEYGEN, "-l", "-E", "sha256", "-f", str(public_key)]).split()[1]


def _run(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout
