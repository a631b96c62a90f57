"""A crowd on the control socket: 1,000 idle connections held open (one uid may hold 1,024),
then, once they are closed, 100 clients sending 50 `status` requests each at once, while the
daemon purifies a burst. Every request must be answered,
`status` must answer quickly behind the idle crowd, and the daemon's memory must stay bounded."""
from __future__ import annotations

import concurrent.futures
import json
import resource
import socket
import statistics
import time

from ..audit import audit_digits
from ..daemon import DaemonError, Layout
from ..inputs import stage_digits
from ..results import Audit, ScenarioResult
from . import Context, drop_in_background, wait_for_reports

IDLE = 1_000
CLIENTS, REQUESTS = 100, 50


def status_client(path: str, requests: int) -> int:
    """One connection sending `requests` status requests one after another; the replies that
    were ok."""
    answered = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(30)
        client.connect(path)
        buffer = b""
        for index in range(requests):
            client.sendall(json.dumps({"id": index, "cmd": "status"}).encode() + b"\n")
            while b"\n" not in buffer:
                chunk = client.recv(65536)
                if not chunk:
                    return answered
                buffer += chunk
            line, buffer = buffer.split(b"\n", 1)
            answered += bool(json.loads(line).get("ok"))
    return answered


def timed_status(path: str) -> float:
    """Milliseconds for one `status` on a new connection."""
    started = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(path)
        client.sendall(b'{"id":1,"cmd":"status"}\n')
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = client.recv(65536)
            if not chunk:
                raise DaemonError("the daemon closed a status connection without answering")
            reply += chunk
    if not json.loads(reply).get("ok"):
        raise DaemonError(f"status failed: {reply[:200]!r}")
    return (time.monotonic() - started) * 1000


def run(context: Context) -> ScenarioResult:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * IDLE)), hard))
    layout = Layout.under(context.work / "crowd")
    expected = stage_digits(context.data, layout.staging, 300)
    names = sorted(expected)
    daemon = context.daemon(layout)
    result = ScenarioResult(name="a crowd on the control socket", audit=Audit(dropped=len(expected)), daemon_alive=False)
    idle: list[socket.socket] = []
    path = str(layout.socket)
    try:
        daemon.start()
        drop_in_background(layout.staging, layout.inbox, names[:100]).join()
        wait_for_reports(daemon, [layout.outbox], 100, timeout=300)
        rss_before = daemon.rss_mib()
        drop_in_background(layout.staging, layout.inbox, names[100:], chunk=10, pause=0.1)

        for _ in range(IDLE):
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.connect(path)
            idle.append(connection)
        time.sleep(0.2)
        behind_idle = [timed_status(path) for _ in range(20)]
        rss_idle = daemon.rss_mib()
        fds_with_idle = daemon.open_descriptors()
        # One uid may hold 1,024 connections: the idle ones go before the clients come.
        for connection in idle:
            connection.close()
        idle.clear()
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            answered = sum(pool.map(lambda _: status_client(path, REQUESTS), range(CLIENTS)))
        rss_crowd = daemon.rss_mib()
        wait_for_reports(daemon, [layout.outbox], len(expected), timeout=300)
        time.sleep(0.5)
        rss_after = daemon.rss_mib()
        result.daemon_alive = daemon.alive()
        exit_status = daemon.drain_and_stop()
        median_ms, worst_ms = statistics.median(behind_idle), max(behind_idle)
        result.checks = {
            f"{CLIENTS} clients x {REQUESTS} status requests all answered": answered == CLIENTS * REQUESTS,
            f"status answered within 100 ms behind {IDLE} idle connections": worst_ms < 100,
            "RSS with the crowd under 64 MiB above the baseline": max(rss_idle, rss_crowd) - rss_before < 64,
            "drain --exit ends with status 0": exit_status == 0,
        }
        result.figures = {
            "idle_connections": IDLE, "clients": CLIENTS, "requests_per_client": REQUESTS, "answered": answered,
            "status_ms_behind_idle_median": round(median_ms, 2), "status_ms_behind_idle_max": round(worst_ms, 2),
            "rss_mib_before": round(rss_before, 1), "rss_mib_with_idle": round(rss_idle, 1),
            "rss_mib_after_clients": round(rss_crowd, 1), "rss_mib_after": round(rss_after, 1),
            "daemon_descriptors_with_idle": fds_with_idle,
        }
    except (DaemonError, OSError, ValueError) as error:
        result.error = f"{type(error).__name__}: {error}"
    finally:
        for connection in idle:
            connection.close()
        daemon.terminate()
    result.audit = audit_digits(expected, [layout.outbox], layout.failed, layout.spool, layout.inbox)
    return result
