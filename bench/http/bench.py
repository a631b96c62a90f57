"""The HTTP API against the file inbox, on one purifyd build, in one run.

Three phases, each on a fresh daemon (so that each peak RSS is its own), with the same bundle,
engine threads and batching (max_batch 16):

1. file: N images renamed into the inbox at once; throughput from the first rename to the
   last report, latency from the reports' timings (claim to commit);
2. api: wrk with 64 connections for D seconds, each request one of the images (closed loop:
   the saturation throughput, latency percentiles as wrk measures them);
3. api-half: an open-loop client sending at half the api phase's rate for D seconds through 64
   connections, latency from each request's scheduled time to its answer (so queueing in the
   client counts), every answer checked.

Writes results.json under --out and prints a table.
"""

import argparse
import asyncio
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from purifyd_bench import daemon_configuration, peak_rss_kib  # noqa: E402


def digits(count: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, size=(28, 28), dtype=np.uint8), mode="L").save(out, format="PNG")
        images.append(out.getvalue())
    return images


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, int(np.ceil(q * len(ordered))))
    return ordered[rank - 1]


class Daemon:
    def __init__(self, binary: str, bundle: Path, threads: int, root: Path, name: str):
        self.root = root / name
        (self.root / "inbox").mkdir(parents=True)
        (self.root / "src").mkdir()
        self.config = self.root / "purifyd.toml"
        self.config.write_text(daemon_configuration(bundle, threads, http=True))
        self.log = open(self.root / "purifyd.log", "w+")
        environment = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        self.process = subprocess.Popen([binary, "--config", str(self.config)], stdout=self.log, stderr=self.log,
                                        env=environment)
        deadline = time.monotonic() + 120
        self.port = None
        while time.monotonic() < deadline and self.port is None:
            if self.process.poll() is not None:
                raise RuntimeError((self.root / "purifyd.log").read_text())
            match = re.search(r"http listening address=127\.0\.0\.1:(\d+)", (self.root / "purifyd.log").read_text())
            self.port = int(match.group(1)) if match else None
            time.sleep(0.05)
        if self.port is None:
            raise RuntimeError("purifyd did not listen")

    def stop(self) -> int:
        rss = peak_rss_kib(self.process.pid)
        self.process.terminate()
        self.process.wait(timeout=60)
        return rss


def file_phase(daemon: Daemon, images: list[bytes], count: int) -> dict:
    names = []
    for index in range(count):
        name = f"d{index:05d}.png"
        (daemon.root / "src" / name).write_bytes(images[index % len(images)])
        names.append(name)
    outbox = daemon.root / "outbox"
    start = time.monotonic()
    for name in names:
        os.rename(daemon.root / "src" / name, daemon.root / "inbox" / name)
    while True:
        done = len(list(outbox.glob("*.json"))) if outbox.exists() else 0
        if done >= count:
            break
        if time.monotonic() - start > 900:
            raise RuntimeError(f"only {done} of {count} files done")
        time.sleep(0.02)
    elapsed = time.monotonic() - start
    totals, statuses = [], {}
    for report_path in outbox.glob("*.json"):
        report = json.loads(report_path.read_text())
        statuses[report["status"]] = statuses.get(report["status"], 0) + 1
        totals.append(report["timings_ms"]["total"])
    failed = len(list((daemon.root / "spool/failed").glob("*.error.json"))) if (daemon.root / "spool/failed").exists() else 0
    return {"images": count, "seconds": elapsed, "per_s": count / elapsed, "purified": statuses.get("purified", 0),
            "failed": failed, "p50_ms": percentile(totals, 0.5), "p99_ms": percentile(totals, 0.99),
            "latency": "pipeline, claim to commit (report timings_ms.total)"}


def wrk_phase(daemon: Daemon, image_dir: Path, connections: int, duration: int, wrk: str) -> dict:
    environment = dict(os.environ, PURIFY_IMAGES=str(image_dir))
    output = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "30s",
         "-s", str(HERE / "post.lua"), f"http://127.0.0.1:{daemon.port}/v1/purify"],
        check=True, capture_output=True, text=True, env=environment).stdout
    def milliseconds(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    latency = {q: milliseconds(re.search(rf"^\s+{q}%\s+(\S+)", output, re.M).group(1)) for q in ("50", "99")}
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return {"connections": connections, "seconds": duration, "requests": requests,
            "per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "p50_ms": latency["50"], "p99_ms": latency["99"],
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else "none",
            "latency": "wrk, request sent to answer read", "wrk_output": output}


async def open_loop(port: int, images: list[bytes], rate: float, duration: float, connections: int) -> dict:
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies, failures = [], []

    async def send(index: int, scheduled: float):
        reader, writer = await pool.get()
        try:
            body = images[index % len(images)]
            writer.write(b"POST /v1/purify HTTP/1.1\r\nHost: bench\r\nContent-Type: image/png\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
            answer = await reader.readexactly(length)
            latencies.append((time.monotonic() - scheduled) * 1000)
            if status != 200 or b'"status" : "purified"' not in answer:
                failures.append(status)
        finally:
            pool.put_nowait((reader, writer))

    start = time.monotonic()
    tasks = []
    count = int(rate * duration)
    for index in range(count):
        scheduled = start + index / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(index, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    return {"rate_per_s": rate, "requests": count, "per_s": count / elapsed, "failed": len(failures),
            "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
            "latency": "open loop, scheduled send to answer read"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--purifyd", required=True)
    parser.add_argument("--bundle", default="models/mnist")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--files", type=int, default=4000)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--out", default="bench/out/http")
    arguments = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    bundle = Path(arguments.bundle).resolve()
    images = digits(256)
    results = {"bundle": bundle.name, "threads": arguments.threads, "max_batch": 16, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="purifyd-bench-http.") as temporary:
        root = Path(temporary)
        image_dir = root / "images"
        image_dir.mkdir()
        for index, image in enumerate(images):
            (image_dir / f"{index:03d}.png").write_bytes(image)

        daemon = Daemon(arguments.purifyd, bundle, arguments.threads, root, "file")
        results["file"] = file_phase(daemon, images, arguments.files)
        results["file"]["peak_rss_mib"] = daemon.stop() / 1024

        daemon = Daemon(arguments.purifyd, bundle, arguments.threads, root, "api")
        results["api"] = wrk_phase(daemon, image_dir, arguments.connections, arguments.duration, wrk)
        results["api"]["peak_rss_mib"] = daemon.stop() / 1024

        daemon = Daemon(arguments.purifyd, bundle, arguments.threads, root, "api-half")
        rate = results["api"]["per_s"] / 2
        results["api_half"] = asyncio.run(open_loop(daemon.port, images, rate, arguments.duration, arguments.connections))
        results["api_half"]["peak_rss_mib"] = daemon.stop() / 1024

    results["api_over_file"] = results["api"]["per_s"] / results["file"]["per_s"]
    results["api_half_p99_over_p50"] = results["api_half"]["p99_ms"] / results["api_half"]["p50_ms"]
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"bundle {bundle.name}, {arguments.threads} engine threads, max_batch 16")
    print(f"{'phase':<10} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8} {'peak RSS MiB':>13}  failed")
    for phase, failed in (("file", "failed"), ("api", "non_2xx"), ("api_half", "failed")):
        entry = results[phase]
        print(f"{phase:<10} {entry['per_s']:8.1f} {entry['p50_ms']:8.2f} {entry['p99_ms']:8.2f} "
              f"{entry['peak_rss_mib']:13.1f}  {entry[failed]}")
    print(f"api / file throughput {results['api_over_file']:.2f}; "
          f"at half the api rate p99 / p50 = {results['api_half_p99_over_p50']:.2f}")


if __name__ == "__main__":
    main()
