"""A throwaway 3-node RabbitMQ cluster on loopback ports, for `make cluster-test`.

Each node runs from a folder of its own (config, env file, plugins file, mnesia, logs, pid file)
beside the machine's own node on 5672, which it never touches: other node names, other ports.
What makes that work on a Debian RabbitMQ:
- the system env file sets NODENAME and the system config pins 127.0.0.1:5672, so each node gets
  its own RABBITMQ_CONF_ENV_FILE and config file;
- the real scripts in /usr/lib/rabbitmq/bin run as the rabbitmq user with HOME=/var/lib/rabbitmq,
  so nodes and CLI share one Erlang cookie;
- `rabbitmqctl wait <pidfile>` rather than await_startup (which fails before epmd knows the node);
- the beam command line does not name the node: a node's OS pid comes from its pid file.
Needs root (runuser). Stops only the nodes it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

RMQ_BIN = Path("/usr/lib/rabbitmq/bin")


class ClusterError(RuntimeError):
    pass


class RabbitCluster:
    """Nodes `<prefix>1..n@localhost` on AMQP ports first_port.., distribution ports +20000."""

    def __init__(self, size: int = 3, first_port: int = 5691, prefix: str = "esbct"):
        self.ports = {f"{prefix}{i + 1}": first_port + i for i in range(size)}
        self.base = Path(tempfile.mkdtemp(prefix="esb-cluster-rmq-"))
        self.killed: set[str] = set()

    # -- what callers use ------------------------------------------------------------------------

    @property
    def nodes(self) -> list[str]:
        return list(self.ports)

    def url(self, node: str) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.ports[node]}/%2F"

    def start(self) -> RabbitCluster:
        """Write each node's files, start the nodes, join them to the first; returns when all 3 run."""
        busy = [port for node, port in self.ports.items() for port in (port, port + 20000) if _listening(port)]
        if busy:
            raise ClusterError(f"ports {busy} are in use: another cluster test (or the reference script) "
                               "is running; stop it first")
        for node, port in self.ports.items():
            self._write_files(node, port)
        shutil.chown(self.base, "rabbitmq", "rabbitmq")
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.base)], check=True)
        for node in self.nodes:
            self._as_node(node, RMQ_BIN / "rabbitmq-server", "-detached", timeout=60)
        for node in self.nodes:
            self.ctl(node, "wait", str(self._pid_file(node)), "--timeout", "120", timeout=130)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", f"{first}@localhost")
            self.ctl(node, "start_app")
        self.ctl(first, "await_online_nodes", str(len(self.nodes)), "--timeout", "60", timeout=70)
        return self

    def ctl(self, node: str, *args: str, timeout: float = 60) -> str:
        """rabbitmqctl -n <node>@localhost ARGS; its stdout."""
        return self._as_node(node, RMQ_BIN / "rabbitmqctl", "-n", f"{node}@localhost", *args, timeout=timeout)

    def live_node(self) -> str:
        return next(node for node in self.nodes if node not in self.killed)

    def leader(self, queue: str) -> str:
        """The node (short name) leading quorum queue `queue`, as a live node sees it."""
        rows = json.loads(self.ctl(self.live_node(), "list_queues", "-q", "name", "leader", "--formatter", "json"))
        for row in rows:
            if row["name"] == queue:
                return row["leader"].partition("@")[0]
        raise ClusterError(f"no queue {queue!r} on the cluster")

    def pid(self, node: str) -> int:
        return int(self._pid_file(node).read_text().strip())

    def kill(self, node: str) -> int:
        """kill -9 the node's beam process; returns its pid."""
        pid = self.pid(node)
        os.kill(pid, signal.SIGKILL)
        self.killed.add(node)
        return pid

    def stop(self) -> None:
        """Stop every node still running (waits for each to exit), then remove the folder."""
        for node in self.nodes:
            pid_file = self._pid_file(node)
            if node in self.killed or not pid_file.exists():
                continue
            try:
                self.ctl(node, "stop", str(pid_file), timeout=60)
            except (ClusterError, subprocess.TimeoutExpired):
                self._kill_if_ours(node)
        shutil.rmtree(self.base, ignore_errors=True)

    # -- the details ----------------------------------------------------------------------------

    def _dir(self, node: str) -> Path:
        return self.base / node

    def _pid_file(self, node: str) -> Path:
        return self._dir(node) / f"{node}.pid"

    def _write_files(self, node: str, port: int) -> None:
        home = self._dir(node)
        (home / "mnesia").mkdir(parents=True)
        (home / "log").mkdir()
        (home / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{port}\nloopback_users.guest = true\n"
            "log.file.level = info\nlog.console = false\n")
        (home / "enabled_plugins").write_text("[].\n")  # never /etc/rabbitmq/enabled_plugins
        (home / "rabbitmq-env.conf").write_text(
            f"NODENAME={node}@localhost\nNODE_IP_ADDRESS=127.0.0.1\nNODE_PORT={port}\nDIST_PORT={port + 20000}\n"
            f"CONFIG_FILE={home}/rabbitmq.conf\nADVANCED_CONFIG_FILE={home}/advanced.config\n"
            f"ENABLED_PLUGINS_FILE={home}/enabled_plugins\nMNESIA_BASE={home}/mnesia\nLOG_BASE={home}/log\n"
            f"PID_FILE={self._pid_file(node)}\nERL_EPMD_ADDRESS=127.0.0.1\n"
            'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"\n')

    def _as_node(self, node: str, *command, timeout: float) -> str:
        env = ["env", "-i", "PATH=/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/var/lib/rabbitmq",
               "LANG=C.UTF-8", "LC_ALL=C.UTF-8", f"RABBITMQ_CONF_ENV_FILE={self._dir(node)}/rabbitmq-env.conf"]
        done = subprocess.run(["runuser", "-u", "rabbitmq", "--", *env, *map(str, command)], cwd=self.base,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise ClusterError(f"{Path(str(command[0])).name} {' '.join(map(str, command[1:]))} failed "
                               f"({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
        return done.stdout

    def _kill_if_ours(self, node: str) -> None:
        """kill -9 the pid in the node's pid file, only if that process runs from our folder."""
        with contextlib.suppress(OSError, ValueError):
            pid = self.pid(node)
            if str(self.base).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(what: str, check, timeout: float, every: float = 0.2):
    """Poll `check` until it returns something truthy; ClusterError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
