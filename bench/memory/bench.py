#!/usr/bin/env python3
"""Memory benchmark: peak RSS and wall time of `purify` and `purifyd` on 12 MP and 40 MP photos.

Writes its inputs once under bench/out/memory/inputs/: a 4000x3000 (12 MP) and a 7296x5472
(39.9 MP, within purify's default 40,000,000-pixel limit) photo-like picture (smooth gradients,
soft-edged shapes and multi-scale texture with a little grain), each as a colour JPEG and as a
gray JPEG, quality 90. The gray bundles (models/mnist, models/fashion-mnist) get the gray JPEGs
by default (--gray-bundles-input colour sends them the colour ones, which they purify channel by
channel at 3x the work); models/cifar10 gets the colour JPEGs.

1. purify: for every bundle and size, `/usr/bin/time -v purify --bundle B --input-policy tile
   --out DIR FILE --threads T --json` with OMP_WAIT_POLICY=PASSIVE, the other options at their
   defaults: wall time and Maximum resident set size. Target: at most 1 GiB peak RSS at 12 MP
   for every bundle.
2. purifyd: for every bundle, a fresh release daemon on a configuration written into a temporary
   folder (inbox, outbox, spool, state directory, control socket; [engine] threads = T;
   input_policy = "tile"; [inbox.limits] raised to 40 MP / 64 MiB / 16384 a side; the other keys,
   [inbox.memory] included, at their defaults), started with OMP_WAIT_POLICY=PASSIVE as the
   systemd unit does. One 12 MP JPEG is written next to the inbox and renamed into it; once its
   report (<name>.json in the outbox, written last) is there, the daemon's VmHWM (peak RSS,
   /proc/PID/status) is read. Then, for each bundle in --burst-bundles, another fresh daemon gets
   --burst copies of the same photo renamed into its inbox at once; once every report is there,
   VmHWM and the burst's total time are read and compared with the unit's MemoryMax
   (systemd/purifyd.service).
   Each daemon is stopped with SIGTERM.

Every report must say "status": "purified" and "domain": {"applied": "tile", ...}; any other
report is listed as a failure in the output and in the results, and the exit status is 1. So is
a burst whose reports do not all come within --burst-timeout (its peak RSS is then over the span
measured). Prints a table (with the CPU, whether it has AVX-512, and the load average, since
other work on the machine moves the times) and writes bench/out/memory/results.json (--results).
--no-purify and --no-daemon run one half, --no-single only the bursts.

    make bench-memory                     # or:
    .venv/bin/python bench/memory/bench.py --purify .build-memory/release/purify \\
        --purifyd .build-memory/release/purifyd --threads 2
"""
import argparse
import datetime
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "out" / "memory"
INPUTS = OUT / "inputs"
BUNDLES = ["mnist", "fashion-mnist", "cifar10"]
SIZES = {"12mp": (4000, 3000), "40mp": (7296, 5472)}
TARGET_12MP_MIB = 1024
MIB = 1 << 20

Image.MAX_IMAGE_PIXELS = None


# ---------------------------------------------------------------------------------------------
# Inputs


def fractal_field(width: int, height: int, rng: np.random.Generator, start: int = 3, falloff: float = 0.6,
                  finest: int = 2) -> np.ndarray:
    """A width x height float32 field of multi-scale noise: from a start x start grid, repeatedly
    upsampled 2x (bicubic) with fresh noise added at `falloff` times the previous amplitude, down
    to cells of `finest` pixels; smooth at large scales, textured at small ones (about 1/f)."""
    field = rng.standard_normal((start, start)).astype(np.float32)
    amplitude = 1.0
    h, w = start, start
    while max(width / w, height / h) > finest:
        w, h = min(2 * w, width), min(2 * h, height)
        field = np.asarray(Image.fromarray(field, mode="F").resize((w, h), Image.BICUBIC))
        amplitude *= falloff
        field = field + amplitude * rng.standard_normal((h, w)).astype(np.float32)
    if (w, h) != (width, height):
        field = np.asarray(Image.fromarray(field, mode="F").resize((width, height), Image.BICUBIC))
    return field


def shapes_layer(width: int, height: int, rng: np.random.Generator, count: int = 150) -> np.ndarray:
    """Soft-edged ellipses and polygons in random colours over a gradient, as float32 RGB 0..1:
    the objects and edges of a photo."""
    scale = 4  # drawn at 1/4 size and upsampled: the edges come out soft, as in a photo
    w, h = width // scale, height // scale
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    gradient = top[None, None, :] + (bottom - top)[None, None, :] * (ys / h)[..., None]
    canvas = Image.fromarray(np.clip(gradient + 0 * xs[..., None], 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)
    for _ in range(count):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        radius = rng.uniform(0.01, 0.2) * min(w, h)
        if rng.random() < 0.5:
            aspect = rng.uniform(0.4, 2.5)
            draw.ellipse([cx - radius * aspect, cy - radius, cx + radius * aspect, cy + radius], fill=colour)
        else:
            sides = int(rng.integers(3, 8))
            angles = np.sort(rng.uniform(0, 2 * np.pi, sides))
            draw.polygon([(float(cx + radius * np.cos(a)), float(cy + radius * np.sin(a))) for a in angles], fill=colour)
    canvas = canvas.filter(ImageFilter.GaussianBlur(1.5)).resize((width, height), Image.BICUBIC)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A photo-like RGB picture: shapes over a gradient, lit by a smooth field, with multi-scale
    texture in luminance and (coarser) in colour, and a little sensor grain."""
    rng = np.random.default_rng(seed)
    base = shapes_layer(width, height, rng)
    light = fractal_field(width, height, rng, falloff=0.45, finest=64)  # smooth shading
    texture = fractal_field(width, height, rng, falloff=0.75, finest=1)  # detail down to the pixel
    light = (light - light.mean()) / (light.std() + 1e-6)
    texture = (texture - texture.mean()) / (texture.std() + 1e-6)
    image = base * (1.0 + 0.25 * light[..., None]) + 0.10 * texture[..., None]
    del light, texture
    for channel in range(3):
        tint = fractal_field(width, height, rng, falloff=0.5, finest=16)
        image[..., channel] += 0.04 * (tint - tint.mean()) / (tint.std() + 1e-6)
        image[..., channel] += rng.normal(0, 0.015, (height, width)).astype(np.float32)
    return Image.fromarray(np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8), "RGB")


def make_inputs() -> dict[str, dict[str, pathlib.Path]]:
    """{size: {"colour": path, "gray": path}}, written once (checked by their dimensions)."""
    INPUTS.mkdir(parents=True, exist_ok=True)
    files = {}
    for seed, (name, (width, height)) in enumerate(SIZES.items()):
        colour, gray = INPUTS / f"photo-{name}.jpg", INPUTS / f"photo-{name}-gray.jpg"
        files[name] = {"colour": colour, "gray": gray}
        if all(p.exists() and Image.open(p).size == (width, height) for p in (colour, gray)):
            continue
        started = time.monotonic()
        picture = photo(width, height, seed=2026 + seed)
        picture.save(colour, quality=90)
        picture.convert("L").save(gray, quality=90)
        print(f"wrote {colour.name} and {gray.name} ({width}x{height}) in {time.monotonic() - started:.0f} s",
              file=sys.stderr)
    return files


def describe_input(path: pathlib.Path) -> dict:
    with Image.open(path) as image:
        return {"file": str(path.relative_to(ROOT)), "width": image.width, "height": image.height,
                "mode": image.mode, "bytes": path.stat().st_size}


# ---------------------------------------------------------------------------------------------
# Checking reports


def check_report(report: dict) -> str | None:
    """None when the report says purified with the tile policy applied, else what is wrong."""
    problems = []
    if report.get("status") != "purified":
        failure = report.get("failure") or report.get("error") or {}
        problems.append(f"status {report.get('status')!r} {json.dumps(failure)[:300]}")
    domain = report.get("domain") or {}
    if domain.get("applied") != "tile":
        problems.append(f"domain.applied {domain.get('applied')!r}")
    return "; ".join(problems) or None


def report_summary(report: dict) -> dict:
    domain = report.get("domain") or {}
    return {"status": report.get("status"), "applied": domain.get("applied"), "tiles": domain.get("tiles"),
            "per_channel": domain.get("per_channel"), "width": domain.get("width"), "height": domain.get("height")}


# ---------------------------------------------------------------------------------------------
# purify


def wall_seconds(text: str) -> float:
    value = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text).group(1)
    seconds = 0.0
    for part in value.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def run_purify(purify: str, bundle: str, image: pathlib.Path, threads: int) -> dict:
    out = OUT / "outputs" / "purify" / bundle / image.stem
    shutil.rmtree(out, ignore_errors=True)
    command = ["/usr/bin/time", "-v", purify, "--bundle", str(ROOT / "models" / bundle), "--input-policy", "tile",
               "--out", str(out), str(image), "--threads", str(threads), "--json"]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    result = {"bundle": bundle, "input": describe_input(image), "tool": "purify", "exit_status": done.returncode,
              "wall_s": wall_seconds(done.stderr) if "Elapsed" in done.stderr else None,
              "peak_rss_mib": int(rss.group(1)) / 1024 if rss else None, "problems": []}
    if done.returncode != 0:
        result["problems"].append(f"purify exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    report_path = out / f"{image.name}.json"
    if report_path.exists():
        report = json.loads(report_path.read_text())
        result["report"] = report_summary(report)
        problem = check_report(report)
        if problem:
            result["problems"].append(problem)
    else:
        result["problems"].append(f"no report {report_path.name}")
    return result


# ---------------------------------------------------------------------------------------------
# purifyd


def memory_max_mib() -> float:
    """The unit's MemoryMax= in MiB (K, M, G, T suffixes)."""
    text = (ROOT / "systemd" / "purifyd.service").read_text()
    value = re.search(r"^MemoryMax=(\d+)([KMGT]?)\s*$", text, re.M)
    number, unit = int(value.group(1)), value.group(2)
    return number * {"": 1 / MIB, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[unit]


def vm_hwm_mib(pid: int) -> float:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) / 1024


def vm_rss_mib(pid: int) -> float:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024


def large_mappings(pid: int, min_mib: float = 16) -> list[dict]:
    """The process's mappings with more than `min_mib` MiB resident, largest first: start
    address, resident MiB, and the mapped file if any. Anonymous ones starting on a 64 MiB
    boundary are typically glibc malloc heaps of threads other than the main one (their arenas);
    others are large allocations (the engine's activation arenas, image buffers)."""
    mappings, current = [], None
    for line in pathlib.Path(f"/proc/{pid}/smaps").read_text().splitlines():
        header = re.match(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$", line)
        if header:
            current = {"start": "0x" + header.group(1), "file": header.group(3) or None}
        elif line.startswith("Rss:") and current is not None:
            rss = int(line.split()[1]) / 1024
            if rss > min_mib:
                start = int(current["start"], 16)
                mappings.append(dict(current, rss_mib=round(rss, 1),
                                     heap_aligned=current["file"] is None and start % (64 << 20) == 0))
    return sorted(mappings, key=lambda m: -m["rss_mib"])


class Daemon:
    """A release purifyd on one inbox, in a temporary folder."""

    def __init__(self, purifyd: str, bundle: str, threads: int, folder: pathlib.Path):
        self.folder = folder
        self.inbox, self.outbox = folder / "inbox", folder / "outbox"
        self.staging = folder / "staging"  # on the inbox's file system: files are renamed in
        self.socket = folder / "run" / "control.sock"
        for path in (self.inbox, self.outbox, self.staging, self.socket.parent):
            path.mkdir(parents=True)
        config = folder / "purifyd.toml"
        config.write_text(f"""# Written by bench/memory/bench.py
state_directory = "{folder / 'state'}"
control_socket = "{self.socket}"
drain_deadline_s = 60
log_level = "notice"

[engine]
threads = {threads}

[[inbox]]
name = "{bundle}"
path = "{self.inbox}"
outbox = "{self.outbox}"
spool_dir = "{folder / 'spool'}"
bundle = "{ROOT / 'models' / bundle}"
input_policy = "tile"

[inbox.limits]
max_bytes = {64 << 20}
max_pixels = 40000000
max_side = 16384
""")
        self.log = open(folder / "purifyd.log", "w")
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        env.pop("NOTIFY_SOCKET", None)
        self.process = subprocess.Popen([purifyd, "--config", str(config)], stdout=self.log, stderr=subprocess.STDOUT,
                                        env=env)
        self.wait_ready()

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"purifyd exited {self.process.returncode} at start: {self.log_tail()}")
            if self.socket.exists():
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    try:
                        client.connect(str(self.socket))
                        return
                    except OSError:
                        pass
            time.sleep(0.2)
        raise RuntimeError(f"purifyd not ready after {timeout} s: {self.log_tail()}")

    def log_tail(self) -> str:
        self.log.flush()
        return (self.folder / "purifyd.log").read_text()[-2000:]

    def stage(self, source: pathlib.Path, names: list[str]) -> None:
        """Copies `source` to each name beside the inbox (same file system)."""
        for name in names:
            shutil.copyfile(source, self.staging / name)

    def drop(self, names: list[str]) -> None:
        """Renames staged files into the inbox, all at once."""
        for name in names:
            os.rename(self.staging / name, self.inbox / name)

    def wait_reports(self, names: list[str], timeout: float) -> tuple[dict[str, dict], float]:
        """The reports of `names` (those that came), waiting at most `timeout` s, and the peak
        VmHWM seen (read while waiting, so that it is known even if the daemon dies). Each time
        reports arrive, `self.timeline` gets their count, the seconds since the call and VmHWM."""
        started = time.monotonic()
        deadline = started + timeout
        pending, reports, hwm = set(names), {}, 0.0
        self.timeline = []
        while pending and time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            hwm = max(hwm, vm_hwm_mib(self.process.pid))
            for name in list(pending):
                path = self.outbox / f"{name}.json"
                failed = self.folder / "spool" / "failed" / f"{name}.error.json"
                if path.exists():
                    reports[name] = json.loads(path.read_text())
                    pending.discard(name)
                elif failed.exists():
                    reports[name] = {"status": "failed", "failure": json.loads(failed.read_text())}
                    pending.discard(name)
            if not self.timeline or self.timeline[-1]["reports"] != len(reports):
                self.timeline.append({"reports": len(reports), "s": round(time.monotonic() - started, 1),
                                      "vm_hwm_mib": round(hwm, 1)})
            if pending:
                time.sleep(0.5)
        if self.process.poll() is None:
            hwm = max(hwm, vm_hwm_mib(self.process.pid))
        return reports, hwm

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def run_daemon(purifyd: str, bundle: str, image: pathlib.Path, threads: int, count: int, timeout: float) -> dict:
    """A fresh daemon on one inbox: `count` copies of `image` renamed into it at once (one file:
    the single run; more: a burst); its peak RSS (VmHWM) once every report is in, or at `timeout`."""
    tool = "purifyd" if count == 1 else f"purifyd burst x{count}"
    row = {"bundle": bundle, "input": describe_input(image), "tool": tool, "files": count, "problems": []}
    with tempfile.TemporaryDirectory(prefix=f"purifyd-memory-{bundle}-") as temp:
        folder = pathlib.Path(temp)
        started = time.monotonic()
        try:
            daemon = Daemon(purifyd, bundle, threads, folder)
        except RuntimeError as error:
            row["problems"].append(str(error))
            return row
        row.update({"ready_s": time.monotonic() - started, "rss_after_start_mib": vm_rss_mib(daemon.process.pid)})
        try:
            names = [f"{image.stem}-{index:03d}.jpg" for index in range(count)]
            daemon.stage(image, names)  # copied before the clock starts, then renamed in at once
            started = time.monotonic()
            daemon.drop(names)
            reports, hwm = daemon.wait_reports(names, timeout)
            row.update({"wall_s": time.monotonic() - started, "peak_rss_mib": hwm,
                        "vm_hwm_by_reports": daemon.timeline})
            if daemon.process.poll() is None:  # where the memory sits once the files are done
                row["rss_at_end_mib"] = vm_rss_mib(daemon.process.pid)
                row["large_mappings_at_end"] = large_mappings(daemon.process.pid)
            if len(reports) < count:
                row["problems"].append(f"incomplete: {len(reports)} of {count} reports within {timeout:.0f} s "
                                       "(peak RSS over that span)")
            collect(row, names, reports)
        finally:
            status = daemon.stop()
            row["daemon_exit_status"] = status
            if status not in (0, None):
                row["problems"].append(f"purifyd exited {status} after SIGTERM: {daemon.log_tail()}")
    return row


def collect(row: dict, names: list[str], reports: dict[str, dict]) -> None:
    missing = [name for name in names if name not in reports]
    if missing:
        row["problems"].append(f"{len(missing)} of {len(names)} reports missing (first: {missing[0]})")
    bad = {name: check_report(report) for name, report in reports.items()}
    bad = {name: problem for name, problem in bad.items() if problem}
    if bad:
        first = next(iter(bad))
        row["problems"].append(f"{len(bad)} of {len(names)} reports not purified/tile (first: {first}: {bad[first]})")
    good = [reports[name] for name in names if name in reports and name not in bad]
    row["purified"] = len(good)
    if good:
        row["report"] = report_summary(good[0])


# ---------------------------------------------------------------------------------------------


def cpu() -> dict:
    info = pathlib.Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", info, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", info, re.M).group(1).split()
    return {"model": model.group(1) if model else "unknown", "cores": os.cpu_count(),
            "avx2": "avx2" in flags, "avx512": sorted(f for f in flags if f.startswith("avx512"))}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def table(rows: list[dict], memory_max: float) -> str:
    lines = ["| bundle | input | tool | wall s | peak RSS MiB | within target? |",
             "|---|---|---|---|---|---|"]
    order = lambda row: (row["tool"] != "purify", BUNDLES.index(row["bundle"]), row["files"] if "files" in row else 0,
                         row["input"]["width"] * row["input"]["height"])
    for row in sorted(rows, key=order):
        source = row["input"]
        size = f"{source['width']}×{source['height']} {'gray' if source['mode'] == 'L' else 'colour'}"
        if row["tool"] == "purify":
            limit, name = (TARGET_12MP_MIB, "≤ 1 GiB") if source["width"] * source["height"] <= 12_000_000 else (None, "")
        else:
            limit, name = memory_max, f"≤ MemoryMax {memory_max:.0f} MiB"
        rss = row.get("peak_rss_mib")
        if rss is None:
            verdict = "–"
        elif limit is None:
            verdict = "(no target)"
        else:
            verdict = f"{'yes' if rss <= limit else f'NO, +{rss - limit:.0f} MiB'} ({name})"
        if row["problems"]:
            verdict += "; FAILED: " + row["problems"][0][:160]
        wall = f"{row['wall_s']:.1f}" if row.get("wall_s") is not None else "–"
        rss_text = f"{rss:.0f}" if rss is not None else "–"
        lines.append(f"| {row['bundle']} | {size} | {row['tool']} | {wall} | {rss_text} | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--purify", default=str(ROOT / ".build-memory" / "release" / "purify"))
    p.add_argument("--purifyd", default=str(ROOT / ".build-memory" / "release" / "purifyd"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bundles", nargs="+", default=BUNDLES, choices=BUNDLES)
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES), help="purify's inputs")
    p.add_argument("--gray-bundles-input", choices=["gray", "colour"], default="gray",
                   help="what the gray bundles get: the gray JPEGs, or the colour ones (channel by channel, 3x the work)")
    p.add_argument("--burst", type=int, default=64, help="copies of the 12 MP photo in the daemon's burst (0: none)")
    p.add_argument("--burst-bundles", nargs="*", default=["mnist"], choices=BUNDLES)
    p.add_argument("--no-purify", action="store_true", help="skip the purify runs")
    p.add_argument("--no-daemon", action="store_true", help="skip the purifyd runs")
    p.add_argument("--no-single", action="store_true", help="skip the daemon's single-file runs (bursts only)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds to wait for one file's report in the daemon")
    p.add_argument("--burst-timeout", type=float, default=4 * 3600, help="seconds to wait for a burst's reports")
    p.add_argument("--results", type=pathlib.Path, default=OUT / "results.json", help="where the results go")
    args = p.parse_args()

    for binary in ([] if args.no_purify else [args.purify]) + ([] if args.no_daemon else [args.purifyd]):
        if not os.access(binary, os.X_OK):
            raise SystemExit(f"{binary} is not an executable: build it first (make bench-memory does)")
    files = make_inputs()
    memory_max = memory_max_mib()
    processor = cpu()
    started_at = datetime.datetime.now(datetime.timezone.utc)
    results = {"date": started_at.strftime("%Y-%m-%d %H:%M UTC"), "cpu": processor, "threads": args.threads,
               "command": " ".join([pathlib.Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
               "gray_bundles_input": args.gray_bundles_input, "unit_memory_max_mib": memory_max,
               "target_12mp_purify_mib": TARGET_12MP_MIB, "load_average_start": load_average(),
               "inputs": {size: {kind: describe_input(path) for kind, path in pair.items()} for size, pair in files.items()},
               "rows": []}
    print(f"CPU: {processor['model']}, {processor['cores']} cores, AVX2 {'yes' if processor['avx2'] else 'no'}, "
          f"AVX-512 {'yes (' + ' '.join(processor['avx512']) + ')' if processor['avx512'] else 'no'}; "
          f"load average {results['load_average_start']}", file=sys.stderr)

    def input_for(bundle: str, size: str) -> pathlib.Path:
        gray_bundle = bundle != "cifar10"
        return files[size]["gray" if gray_bundle and args.gray_bundles_input == "gray" else "colour"]

    def record(rows: list[dict]) -> None:
        for row in rows:
            row["load_average_after"] = load_average()
            results["rows"].append(row)
            rss = row.get("peak_rss_mib")
            wall = row.get("wall_s")
            print(f"{row['bundle']:>13} {row['input']['width']}x{row['input']['height']} {row['input']['mode']:>3} "
                  f"{row['tool']:<18} {wall if wall is None else round(wall, 1)} s, peak RSS "
                  f"{rss if rss is None else round(rss)} MiB, load {row['load_average_after']}"
                  + (f", PROBLEMS: {row['problems']}" if row["problems"] else ""), file=sys.stderr)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=2) + "\n")

    if not args.no_purify:
        for bundle in args.bundles:
            for size in args.sizes:
                record([run_purify(args.purify, bundle, input_for(bundle, size), args.threads)])
    if not args.no_daemon:
        for bundle in [] if args.no_single else args.bundles:
            record([run_daemon(args.purifyd, bundle, input_for(bundle, "12mp"), args.threads, 1, args.timeout)])
        if args.burst > 1:
            for bundle in [b for b in args.bundles if b in args.burst_bundles]:
                record([run_daemon(args.purifyd, bundle, input_for(bundle, "12mp"), args.threads, args.burst,
                                   args.burst_timeout)])

    results["load_average_end"] = load_average()
    results["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    failures = [row for row in results["rows"] if row["problems"]]
    results["failures"] = len(failures)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nCPU: {processor['model']}, {processor['cores']} cores, AVX-512 "
          f"{'present' if processor['avx512'] else 'absent'}; --threads {args.threads}; gray bundles got "
          f"{args.gray_bundles_input} JPEGs; load average {results['load_average_start']} at start, "
          f"{results['load_average_end']} at end; unit MemoryMax {memory_max:.0f} MiB")
    print(table(results["rows"], memory_max))
    for row in failures:
        print(f"FAILED {row['bundle']} {row['tool']}: {row['problems']}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
