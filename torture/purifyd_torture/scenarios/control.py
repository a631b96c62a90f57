"""Malformed control requests while the daemon purifies a burst: random bytes, broken and
non-object JSON, wrong types, unknown commands, deep nesting, invalid UTF-8, overlong lines,
lines cut by a hang-up. Each line must get one error reply (an overlong one: a reply and the
connection closed), the daemon must keep purifying and answering, and its descriptors and
memory must come back."""
from __future__ import annotations

import json
import random
import socket
import time

from ..audit import audit_digits
from ..daemon import DaemonError, Layout
from ..inputs import stage_digits
from ..results import Audit, ScenarioResult
from . import Context, drop_in_background, wait_for_reports

MAX_LINE = 16 * 1024
COMMANDS = ["status", "stats", "metrics", "version", "rescan"]


def malformed_line(rng: random.Random) -> tuple[str, bytes]:
    """One request line (without its newline) that no command accepts, and its category."""
    kind = rng.randrange(14)
    if kind == 0:
        return "random bytes", bytes(rng.choice([b for b in range(256) if b != 10]) for _ in range(rng.randrange(1, 400)))
    if kind == 1:
        return "broken JSON", rng.choice([b"{", b"}", b"[", b"{\"cmd\":}", b"{\"cmd\":\"status\"", b"{'cmd':'status'}",
                                          b"{\"id\":1 \"cmd\":\"status\"}", b"nul", b"tru",
                                          b"{\"cmd\":\"st\\atus\"}", b"\"unterminated", b"{\"cmd\":\"status\"}}"])
    if kind == 2:
        return "not an object", rng.choice([b"null", b"1", b"-0.5e308", b"\"status\"", b"[\"status\"]", b"true", b"[]"])
    if kind == 3:
        return "cmd missing or not a string", rng.choice([b"{}", b"{\"id\":1}", b"{\"cmd\":null}", b"{\"cmd\":1}",
                                                          b"{\"cmd\":[\"status\"]}", b"{\"cmd\":{\"status\":1}}", b"{\"cmd\":true}"])
    if kind == 4:
        name = rng.choice(["STATUS", "status ", " status", "stat", "shutdown", "exec", "drain\u0000", "../status", "", "\u00e9tat"])
        return "unknown command", json.dumps({"id": rng.randrange(1 << 30), "cmd": name}).encode()
    if kind == 5:
        return "arguments of the wrong type", json.dumps({"id": 1, "cmd": rng.choice(["pause", "resume", "drain", "rescan"]),
                                                          "args": rng.choice([1, "x", [1], True, 0.5])}).encode()
    if kind == 6:
        return "bad argument values", rng.choice([
            json.dumps({"id": 1, "cmd": "drain", "args": {"exit": "yes"}}),
            json.dumps({"id": 1, "cmd": "pause", "args": {"inbox": "no-such-inbox"}}),
            json.dumps({"id": 1, "cmd": "pause", "args": {"inbox": 7}}),
            json.dumps({"id": 1, "cmd": "drain", "args": {"inbox": ["torture"]}}),
        ]).encode()
    if kind == 7:
        return "unknown top-level key", json.dumps({"id": 1, "cmd": rng.choice(COMMANDS), rng.choice(["x", "ARGS", "Cmd"]): 1}).encode()
    if kind == 8:
        opener, closer = rng.choice([(b"[", b"]"), (b"{\"a\":", b"}")])
        depth = rng.randrange(100, (MAX_LINE - 40) // (len(opener) + len(closer)))
        return "deep nesting", b"{\"cmd\":\"x\",\"id\":" + opener * depth + b"1" + closer * depth + b"}"
    if kind == 9:
        return "invalid UTF-8 or escapes", rng.choice([b"{\"cmd\":\"st\xffatus\"}", b"{\"cmd\":\"\\ud800\"}", b"{\"cmd\":\"\\u00\"}",
                                                      b"{\"cmd\":\"\xc0\xaf\"}", b"{\"id\":\"\xed\xa0\x80\",\"cmd\":1}",
                                                      b"\xef\xbb\xbf{\"cmd\":1}"])
    if kind == 10:
        return "huge numbers", rng.choice([b"{\"id\":1e99999,\"cmd\":1}", b"{\"id\":" + b"9" * 5000 + b",\"cmd\":1}",
                                           b"{\"id\":-" + b"1" * 400 + b".5e-99999,\"cmd\":null}"])
    if kind == 11:
        return "control characters", b"{\"cmd\":\"sta\ttus\x00\",\"id\":\"\x01\x02\"}"
    if kind == 12:
        return "empty or blank line", rng.choice([b"", b" ", b"\t\t", b"\r"])
    return "long string value", json.dumps({"id": "x" * rng.randrange(1000, MAX_LINE - 100), "cmd": "no"}).encode()


def is_blank(line: bytes) -> bool:
    """Blank lines (spaces, tabs, a carriage return) are skipped without a reply."""
    return not line.strip(b" \t\r")


def read_remaining(client: socket.socket, buffer: bytes) -> list[dict]:
    """The complete reply lines left to read on a connection the daemon has closed."""
    try:
        while chunk := client.recv(65536):
            buffer += chunk
    except OSError:
        pass
    return [json.loads(line) for line in buffer.split(b"\n") if line.strip()]


def refused_and_closed(path: str, payload: bytes, timeout: float = 10) -> bool:
    """Sends `payload` (an overlong line) and reads until the daemon closes: true when it
    answered with exactly one error and closed the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(path)
        try:
            client.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        replies = read_remaining(client, b"")
    return len(replies) == 1 and replies[0].get("ok") is False and replies[0]["error"]["code"] == "line_too_long"


def exchange(path: str, lines: list[bytes], timeout: float = 10) -> tuple[list[dict], bool]:
    """Sends the lines on one connection, one at a time, and reads a reply to each that is not
    blank; returns the replies and whether the daemon closed the connection."""
    replies: list[dict] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(path)
        buffer = b""
        for line in lines:
            try:
                client.sendall(line + b"\n")
            except (BrokenPipeError, ConnectionResetError):
                # The daemon refused the line and closed: its reply may still be waiting.
                return replies + read_remaining(client, buffer), True
            if is_blank(line):
                continue
            while b"\n" not in buffer:
                try:
                    chunk = client.recv(65536)
                except ConnectionResetError:
                    return replies, True
                if not chunk:
                    return replies, True
                buffer += chunk
            reply, buffer = buffer.split(b"\n", 1)
            replies.append(json.loads(reply))
    return replies, False


def run(context: Context) -> ScenarioResult:
    total = context.sizes.control_requests
    layout = Layout.under(context.work / "control")
    expected = stage_digits(context.data, layout.staging, 300)
    names = sorted(expected)
    daemon = context.daemon(layout)
    rng = context.rng
    result = ScenarioResult(name="malformed control requests", audit=Audit(dropped=len(expected)), daemon_alive=False)
    categories: dict[str, int] = {}
    accepted: list[str] = []
    unanswered = replies_total = closed_early = blank = 0
    try:
        daemon.start()
        # A first batch warms the pipeline, so that the memory compared is the control server's.
        drop_in_background(layout.staging, layout.inbox, names[:100]).join()
        wait_for_reports(daemon, [layout.outbox], 100, timeout=300)
        baseline_fds, baseline_rss = daemon.open_descriptors(), daemon.rss_mib()
        drop_in_background(layout.staging, layout.inbox, names[100:], chunk=10, pause=0.2)
        sent = 0
        started = time.monotonic()
        while sent < total:
            batch = []
            for _ in range(min(rng.randrange(1, 60), total - sent)):
                category, line = malformed_line(rng)
                categories[category] = categories.get(category, 0) + 1
                batch.append(line)
                blank += is_blank(line)
            sent += len(batch)
            replies, closed = exchange(str(layout.socket), batch)
            replies_total += len(replies)
            accepted += [json.dumps(reply)[:200] for reply in replies if reply.get("ok")]
            if closed:
                closed_early += 1
                unanswered += sum(not is_blank(line) for line in batch) - len(replies)
        # Overlong lines, and lines cut off by a hang-up.
        overlong_replies = 0
        for size in (MAX_LINE + 1, MAX_LINE * 4, 1 << 20):
            overlong_replies += refused_and_closed(str(layout.socket), b"{\"cmd\":\"" + b"a" * size + b"\"}\n")
        for partial in (b"{\"cmd\":\"sta", b"\xff" * 100, b"{" * 1000):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(str(layout.socket))
                client.sendall(partial)
        seconds = time.monotonic() - started

        status_started = time.monotonic()
        status_ok = daemon.request("status", timeout=5)["ok"]
        status_ms = (time.monotonic() - status_started) * 1000
        wait_for_reports(daemon, [layout.outbox], len(expected), timeout=300)
        time.sleep(1)
        fds_after, rss_after = daemon.open_descriptors(), daemon.rss_mib()
        result.daemon_alive = daemon.alive()
        exit_status = daemon.drain_and_stop()
        result.checks = {
            "every malformed line answered with an error": unanswered == 0 and not accepted and replies_total == total - blank,
            "overlong lines refused and closed": overlong_replies == 3,
            "status answered afterwards": status_ok,
            "descriptors back to the baseline": fds_after <= baseline_fds,
            "RSS grew by under 64 MiB": rss_after - baseline_rss < 64,
            "drain --exit ends with status 0": exit_status == 0,
        }
        result.figures = {"requests": total, "blank_lines": blank, "replies": replies_total, "accepted": len(accepted), "accepted_examples": accepted[:5],
                          "connections_closed_early": closed_early, "categories": categories, "seconds": round(seconds, 1),
                          "status_ms_after": round(status_ms, 1), "fds_before": baseline_fds, "fds_after": fds_after,
                          "rss_mib_before": round(baseline_rss, 1), "rss_mib_after": round(rss_after, 1)}
    except (DaemonError, OSError, ValueError) as error:
        result.error = f"{type(error).__name__}: {error}"
    finally:
        daemon.terminate()
    result.audit = audit_digits(expected, [layout.outbox], layout.failed, layout.spool, layout.inbox)
    return result
