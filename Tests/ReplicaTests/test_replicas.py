"""Three purifyd replicas behind nginx on loopback: one replica is killed with SIGKILL while a
load runs, and every request must still be answered with a correct purified image.

Needs PURIFYD_BIN (the purifyd binary; `make test-replicas` builds it) and nginx (`make debs`).
Replica 0 and 1 listen on ports of their own; replica 2 takes its listening socket the way
systemd's purifyd-http.socket passes it (LISTEN_FDS, descriptor 3).
"""

import base64
import hashlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "Tests/PurifyPipelineTests/Fixtures/bundle"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REQUESTS = 600
CLIENTS = 12


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(28, 28), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return out.getvalue()


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        connection.close()


class Replica:
    """One purifyd with an inbox of its own and the HTTP API on `port`."""

    def __init__(self, root: Path, index: int, socket_activated: bool):
        self.folder = root / f"replica{index}"
        (self.folder / "inbox").mkdir(parents=True)
        self.log_path = self.folder / "purifyd.log"
        self.listener = None
        if socket_activated:
            self.listener = socket.socket()
            self.listener.bind(("127.0.0.1", 0))
            self.listener.listen(128)
            self.port = self.listener.getsockname()[1]
            listen = "systemd"
        else:
            self.port = free_port()
            listen = f"127.0.0.1:{self.port}"
        (self.folder / "purifyd.toml").write_text(f"""
state_directory = "state"
control_socket = "control.sock"
[http]
listen = "{listen}"
[[inbox]]
name = "replica{index}"
path = "inbox"
outbox = "outbox"
spool_dir = "spool"
bundle = "{BUNDLE}"
[inbox.batch]
max_batch = 16
max_delay_ms = 5
""")

    def start(self) -> None:
        command = [os.environ["PURIFYD_BIN"], "--config", str(self.folder / "purifyd.toml")]
        environment = {"PATH": "/usr/bin:/bin", "OMP_WAIT_POLICY": "PASSIVE"}
        log = open(self.log_path, "wb")
        if self.listener is None:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, env=environment)
        else:
            # What systemd does for a socket unit: the socket at descriptor 3, LISTEN_FDS=1 and
            # LISTEN_PID naming the service's own process (the shell execs purifyd, keeping its pid).
            listener = self.listener.fileno()

            def socket_at_3():
                os.dup2(listener, 3)
                os.set_inheritable(3, True)

            self.process = subprocess.Popen(
                ["/bin/sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh", *command],
                stdout=log, stderr=log, env=environment, close_fds=False, preexec_fn=socket_at_3)
            self.listener.close()
        wait_until(lambda: get(self.port, "/readyz")[0] == 200 or self.process.poll() is not None, 60,
                   f"replica on port {self.port} to be ready")
        assert self.process.poll() is None, self.log_path.read_text()

    def served(self) -> int:
        """API requests this replica purified, from its /metrics."""
        status, body = get(self.port, "/metrics")
        assert status == 200
        total = 0
        for line in body.decode().splitlines():
            if line.startswith("purifyd_results_total{") and 'source="http"' in line and 'status="purified"' in line:
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


def nginx_configuration(root: Path, port: int, replicas: list[Replica]) -> str:
    servers = "\n".join(f"    server 127.0.0.1:{r.port} max_fails=1 fail_timeout=30s;" for r in replicas)
    user = "user root root;" if os.geteuid() == 0 else ""
    temp = root / "nginx"
    return f"""
{user}
daemon off;
worker_processes 1;
pid {temp}/nginx.pid;
error_log {temp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log {temp}/access.log;
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  client_max_body_size 32m;
  upstream purifyd {{
{servers}
    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://purifyd;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Purifying is idempotent: a request a dying replica held goes to the next one.
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 2s;
      proxy_read_timeout 60s;
    }}
  }}
}}
"""


@pytest.fixture
def cluster(tmp_path):
    if not os.environ.get("PURIFYD_BIN"):
        pytest.fail("PURIFYD_BIN is not set: run `make test-replicas`")
    if not os.path.exists(NGINX):
        pytest.fail("nginx is not installed: run `make debs`")
    replicas = [Replica(tmp_path, index, socket_activated=index == 2) for index in range(3)]
    (tmp_path / "nginx").mkdir()
    port = free_port()
    (tmp_path / "nginx.conf").write_text(nginx_configuration(tmp_path, port, replicas))
    nginx = None
    try:
        for replica in replicas:
            replica.start()
        nginx = subprocess.Popen([NGINX, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path / "nginx")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: get(port, "/healthz")[0] == 200 or nginx.poll() is not None, 30, "nginx")
        assert nginx.poll() is None, nginx.stderr.read().decode()
        yield port, replicas
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=30)
        for replica in replicas:
            replica.stop()


def check_answer(status: int, body: bytes, image: bytes) -> None:
    """A 200 whose report is for these very bytes and whose image is the purified 28×28 PNG."""
    assert status == 200, body[:500]
    envelope = json.loads(body)
    report = envelope["report"]
    assert report["status"] == "purified"
    assert report["input"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert report["input"]["path"] == "http:" + envelope["request_id"]
    assert envelope["image"]["content_type"] == "image/png"
    purified = base64.b64decode(envelope["image"]["base64"])
    assert len(purified) == report["output"]["bytes"]
    decoded = Image.open(io.BytesIO(purified))
    assert decoded.size == (28, 28) and decoded.mode == "L"


def test_replica_killed_mid_load_loses_no_request(cluster):
    port, replicas = cluster
    images = [png(seed) for seed in range(REQUESTS)]
    answered = []
    failures = []
    lock = threading.Lock()
    next_index = iter(range(REQUESTS))

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                break
            try:
                connection.request("POST", "/v1/purify", body=images[index],
                                   headers={"Content-Type": "image/png", "X-Request-Id": f"load-{index}"})
                response = connection.getresponse()
                body = response.read()
                check_answer(response.status, body, images[index])
                assert json.loads(body)["request_id"] == f"load-{index}"
                with lock:
                    answered.append(index)
            except Exception as error:  # every failure is reported, none retried
                with lock:
                    failures.append((index, repr(error)))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(answered) >= REQUESTS // 3 or failures, 120, "a third of the load")
    victim = replicas[1]
    served_before_kill = victim.served()
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(timeout=30)
    answered_at_kill = len(answered)
    for thread in threads:
        thread.join(timeout=180)

    assert not failures, failures[:5]
    assert sorted(answered) == list(range(REQUESTS))
    assert answered_at_kill < REQUESTS, "the kill came after the load had ended"
    assert served_before_kill > 0, "the killed replica served nothing before it died"
    # nginx saw the dead replica fail (reset or refused) and sent those requests elsewhere.
    errors = (victim.folder.parent / "nginx/error.log").read_text()
    assert f"127.0.0.1:{victim.port}" in errors, errors[-2000:]
    survivors = [replicas[0], replicas[2]]
    served = [replica.served() for replica in survivors]
    assert all(count > 0 for count in served), served
