"""A real purifyd on one inbox in a scratch folder, and a client for its control socket."""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import time
from typing import Any


class DaemonError(RuntimeError):
    """purifyd did not start, or stopped answering."""


def control_request(socket_path: pathlib.Path, cmd: str, timeout: float = 10, **arguments: Any) -> dict[str, Any]:
    """Sends one request and returns the reply (raises OSError or DaemonError when there is none)."""
    request = {"id": 1, "cmd": cmd, **({"args": arguments} if arguments else {})}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(socket_path))
        client.sendall(json.dumps(request).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = client.recv(65536)
            if not chunk:
                raise DaemonError(f"the daemon closed the connection without answering {cmd}")
            reply += chunk
    return json.loads(reply)


@dataclasses.dataclass(frozen=True)
class Layout:
    """The folders of one inbox. The inbox, staging folder and spool share a file system (claims
    and drops are renames); the outbox may be a mount of its own."""

    root: pathlib.Path
    inbox: pathlib.Path
    staging: pathlib.Path
    outbox: pathlib.Path
    spool: pathlib.Path
    socket: pathlib.Path
    log: pathlib.Path

    @property
    def failed(self) -> pathlib.Path:
        return self.spool / "failed"

    @staticmethod
    def under(root: pathlib.Path, data: pathlib.Path | None = None, outbox: pathlib.Path | None = None) -> "Layout":
        """Configuration, log, socket and state in `root`; inbox, staging and spool in `data`
        (default `root`), the outbox in `outbox` (default `root`/outbox)."""
        data = data or root
        layout = Layout(root=root, inbox=data / "inbox", staging=data / "staging", outbox=outbox or root / "outbox",
                        spool=data / "spool", socket=root / "run" / "control.sock", log=root / "purifyd.log")
        for path in (layout.inbox, layout.staging, layout.outbox, layout.socket.parent):
            path.mkdir(parents=True, exist_ok=True)
        return layout


class Daemon:
    """purifyd on `layout`, started and stopped (or killed) as a scenario needs. Every start
    appends to the same log."""

    def __init__(self, purifyd: pathlib.Path, bundle: pathlib.Path, layout: Layout, *, threads: int = 2,
                 queue_capacity: int = 64, extra_inbox: str = ""):
        self.purifyd = purifyd
        self.layout = layout
        self.config = layout.root / "purifyd.toml"
        self.config.write_text(f"""# Written by the torture suite (torture/README.md)
state_directory = "{layout.root / 'state'}"
control_socket = "{layout.socket}"
drain_deadline_s = 120
log_level = "notice"

[engine]
threads = {threads}

[[inbox]]
name = "torture"
path = "{layout.inbox}"
outbox = "{layout.outbox}"
spool_dir = "{layout.spool}"
bundle = "{bundle}"
queue_capacity = {queue_capacity}
{extra_inbox}
""")
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    def start(self, wait: bool = True, timeout: float = 300) -> None:
        assert self.pid is None, "purifyd is running already"
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        env.pop("NOTIFY_SOCKET", None)
        with open(self.layout.log, "ab") as log:
            self.process = subprocess.Popen([str(self.purifyd), "--config", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT, env=env)
        self.starts += 1
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise DaemonError(f"purifyd exited at start ({self.exit_status()}): {self.log_tail()}")
            try:
                if self.request("status", timeout=2).get("ok"):
                    return
            except (OSError, DaemonError, json.JSONDecodeError):
                pass
            time.sleep(0.1)
        raise DaemonError(f"purifyd not ready after {timeout} s: {self.log_tail()}")

    def request(self, cmd: str, timeout: float = 10, **arguments: Any) -> dict[str, Any]:
        return control_request(self.layout.socket, cmd, timeout=timeout, **arguments)

    def inbox_status(self) -> dict[str, Any]:
        reply = self.request("status")
        if not reply.get("ok"):
            raise DaemonError(f"status failed: {reply}")
        return reply["inboxes"][0] | {"state": reply["state"]}

    def alive(self) -> bool:
        """Running and answering `status`."""
        if self.pid is None:
            return False
        try:
            return bool(self.request("status", timeout=5).get("ok"))
        except (OSError, DaemonError, json.JSONDecodeError):
            return False

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def drain_and_stop(self, timeout: float = 600) -> int | None:
        """`drain --exit`: waits for the files in flight, then the daemon exits; its exit status."""
        if self.pid is None:
            return self.exit_status()
        reply = self.request("drain", timeout=timeout, exit=True)
        if not reply.get("ok"):
            raise DaemonError(f"drain failed: {reply}")
        assert self.process is not None
        self.process.wait(timeout=120)
        return self.process.returncode

    def terminate(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit; for clean-up after a failed scenario."""
        if self.pid is None:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=150)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def exit_status(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def open_descriptors(self) -> int:
        assert self.pid is not None
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_mib(self) -> float:
        assert self.pid is not None
        for line in pathlib.Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def log_lines(self, needle: str) -> int:
        return sum(needle in line for line in self.layout.log.read_text(errors="replace").splitlines())

    def log_tail(self, characters: int = 3000) -> str:
        return self.layout.log.read_text(errors="replace")[-characters:] if self.layout.log.exists() else ""

    def wait_until(self, condition, timeout: float, what: str, interval: float = 0.2):
        """Polls `condition(status)` until it returns a true value, which it returns."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid is None:
                raise DaemonError(f"purifyd exited ({self.exit_status()}) while waiting for {what}: {self.log_tail()}")
            value = condition(self.inbox_status())
            if value:
                return value
            time.sleep(interval)
        raise DaemonError(f"timed out after {timeout} s waiting for {what}; status {self.inbox_status()}")
