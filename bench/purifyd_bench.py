"""What the benchmarks that run a release purifyd share: one configuration, so that the HTTP and
the end-to-end benchmarks measure the same daemon, and a process's CPU time and peak RSS."""

import os
from pathlib import Path


def daemon_configuration(bundle: Path, threads: int, http: bool = False) -> str:
    """purifyd.toml for one inbox `bench` (inbox/, outbox/, spool/, state/ and control.sock in the
    daemon's folder) on `bundle` with `threads` engine threads, 256 files in flight and batches of
    up to 16 with a 10 ms deadline; with `http`, the API on a free loopback port."""
    api = '[http]\nlisten = "127.0.0.1:0"\nmax_in_flight = 1024\n' if http else ""
    return f"""state_directory = "state"
control_socket = "control.sock"
log_level = "notice"
[engine]
threads = {threads}
{api}[[inbox]]
name = "bench"
path = "inbox"
outbox = "outbox"
spool_dir = "spool"
bundle = "{bundle}"
queue_capacity = 256
[inbox.batch]
max_batch = 16
max_delay_ms = 10
"""


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time so far, all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")
