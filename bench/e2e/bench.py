"""purifyd end to end against a Python + ONNX Runtime folder watcher (watcher.py), in one run.

For each dataset (MNIST: 28×28 gray PNGs from the MNIST test set, models/mnist; CIFAR-10:
32×32 RGB PNGs from the JPEG-q75 CIFAR-10 test copy, models/cifar10) it writes N test images
once under --out/inputs, then alternates rounds: a fresh release purifyd (the engine's thread
count, max_batch 16, max_delay_ms 10, queue_capacity 256, OMP_WAIT_POLICY=PASSIVE, as
bench/http/bench.py configures it), then a fresh watcher with the same thread count, batch and
delay, each on a new folder tree. A round copies the N files next to the inbox, starts the side
and waits until it is ready (the daemon's READY=1 on $NOTIFY_SOCKET, the watcher's "ready"),
renames all N into the inbox at once and times from the first rename until the N-th report is
renamed into the outbox (inotify on the outbox). Then it checks that every input has its PNG and
report and nothing failed or was left behind, reads the side's peak RSS (VmHWM) and stops it.

Prints images/s (min, median, max over rounds) per side, the ratio daemon / watcher of the
medians, the side's CPU time (user + system, all threads) per image during the burst, peak RSS,
and how often the two sides' reports agree on the input's and the purified image's top-1 class
(the same job done the same way should agree almost always); writes results.json under --out.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from purifyd_bench import cpu_seconds, daemon_configuration, peak_rss_kib  # noqa: E402
from watcher import IN_MOVED_TO, Inotify  # noqa: E402

SIDES = ("daemon", "watcher")


@dataclass(frozen=True)
class Dataset:
    """A test set written as PNGs, and the bundle that serves it."""

    name: str
    archive: Path
    bundle: Path


DATASETS = {
    "mnist": Dataset("mnist", ROOT.parent / "shared/data/mnist/test.npz", ROOT / "models/mnist"),
    "cifar10": Dataset("cifar10", ROOT.parent / "shared/data/cifar10/test.npz", ROOT / "models/cifar10"),
}


@dataclass
class Round:
    """One side's timed burst."""

    side: str
    round: int
    images: int
    seconds: float
    per_s: float
    cpu_ms_per_image: float
    peak_rss_mib: float


@dataclass
class Summary:
    """One side's rounds on one dataset."""

    side: str
    per_s_min: float
    per_s_median: float
    per_s_max: float
    cpu_ms_per_image_median: float
    peak_rss_mib_max: float


@dataclass
class DatasetResult:
    """Both sides on one dataset, and how far their reports agree."""

    dataset: str
    bundle: str
    images: int
    rounds: list[Round] = field(default_factory=list)
    summaries: dict[str, Summary] = field(default_factory=dict)
    daemon_over_watcher: float = 0.0
    input_top1_agreement: float = 0.0
    purified_top1_agreement: float = 0.0


def write_inputs(dataset: Dataset, count: int, out: Path) -> Path:
    """N test images of the dataset as PNGs (cycled past the test set's size; CIFAR-10's
    class-sorted order shuffled with a fixed seed), written once and reused."""
    folder = out / "inputs" / f"{dataset.name}-{count}"
    if folder.is_dir() and len(os.listdir(folder)) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with np.load(dataset.archive) as archive:
        images = archive["images"]
    order = np.random.default_rng(0).permutation(len(images))
    for index in range(count):
        pixels = images[order[index % len(images)]]
        Image.fromarray(pixels.squeeze(axis=2) if pixels.shape[2] == 1 else pixels).save(folder / f"{dataset.name}-{index:06d}.png")
    return folder


def start_daemon(binary: Path, bundle: Path, threads: int, folder: Path) -> subprocess.Popen:
    """A purifyd on folder/inbox, configured as bench/http/bench.py does (without HTTP), once it
    has sent READY=1 (models loaded, inbox watched)."""
    config = folder / "purifyd.toml"
    config.write_text(daemon_configuration(bundle, threads))
    notify_path = folder / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(120)
        environment = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", NOTIFY_SOCKET=str(notify_path))
        with open(folder / "purifyd.log", "w") as log:
            process = subprocess.Popen([str(binary), "--config", str(config)], stdout=log, stderr=log, env=environment)
        while b"READY=1" not in notify.recv(4096):
            pass
    return process


def start_watcher(bundle: Path, threads: int, io_threads: int, folder: Path) -> subprocess.Popen:
    """watcher.py on folder/inbox, once it has printed "ready"."""
    with open(folder / "watcher.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(HERE / "watcher.py"), "--bundle", str(bundle), "--inbox", str(folder / "inbox"),
             "--outbox", str(folder / "outbox"), "--spool", str(folder / "spool"), "--threads", str(threads),
             "--io-threads", str(io_threads), "--max-batch", "16", "--max-delay-ms", "10", "--queue-capacity", "256"],
            stdout=subprocess.PIPE, stderr=log, text=True)
    if process.stdout.readline().strip() != "ready":
        raise RuntimeError((folder / "watcher.log").read_text())
    return process


def burst(folder: Path, names: list[str], timeout: float) -> float:
    """Renames every file of folder/src into folder/inbox and returns the seconds from the first
    rename until the last report has been renamed into folder/outbox."""
    outbox = Inotify(folder / "outbox", IN_MOVED_TO)
    reports = set()
    start = time.monotonic()
    for name in names:
        os.rename(folder / "src" / name, folder / "inbox" / name)
    while len(reports) < len(names):
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"{folder.name}: {len(reports)} of {len(names)} reports after {timeout} s")
        events, overflowed = outbox.read(0.5)
        reports.update(event for event in events if event.endswith(".json"))
        if overflowed:
            reports = {entry.name for entry in os.scandir(folder / "outbox") if entry.name.endswith(".json")}
    elapsed = time.monotonic() - start
    outbox.close()
    return elapsed


def check_outputs(folder: Path, names: list[str]) -> dict[str, tuple[int, int]]:
    """Fails unless each input has its purified PNG and a "purified" report, nothing else is in
    the outbox and the inbox is empty; returns each input's (input, purified) top-1 class."""
    expected = {f"{Path(name).stem}.png" for name in names}
    present = {entry.name for entry in os.scandir(folder / "outbox")}
    want = expected | {name + ".json" for name in expected}
    if present != want:
        raise RuntimeError(f"{folder.name}: {len(want - present)} outputs missing, {len(present - want)} unexpected")
    if os.listdir(folder / "inbox"):
        raise RuntimeError(f"{folder.name}: files left in the inbox")
    classes = {}
    for name in expected:
        report = json.loads((folder / "outbox" / f"{name}.json").read_text())
        if report["status"] != "purified":
            raise RuntimeError(f"{folder.name}: {name} {report['status']}")
        classification = report["classification"]
        classes[name] = (classification["input"][0]["index"], classification["purified"][0]["index"])
    return classes


def run_round(side: str, index: int, dataset: Dataset, inputs: Path, arguments: argparse.Namespace,
              runs: Path) -> tuple[Round, dict[str, tuple[int, int]]]:
    """One side's burst on a fresh folder tree; the tree is removed afterwards."""
    folder = runs / f"{dataset.name}-{side}-{index}"
    shutil.rmtree(folder, ignore_errors=True)
    for sub in ("src", "inbox", "outbox"):
        (folder / sub).mkdir(parents=True)
    names = sorted(os.listdir(inputs))
    for name in names:
        shutil.copyfile(inputs / name, folder / "src" / name)
    if side == "daemon":
        process = start_daemon(arguments.purifyd, dataset.bundle, arguments.threads, folder)
    else:
        process = start_watcher(dataset.bundle, arguments.threads, arguments.watcher_io_threads, folder)
    try:
        cpu_before = cpu_seconds(process.pid)
        seconds = burst(folder, names, arguments.timeout)
        cpu = cpu_seconds(process.pid) - cpu_before
        rss = peak_rss_kib(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=60)
    classes = check_outputs(folder, names)
    shutil.rmtree(folder)
    return Round(side, index, len(names), seconds, len(names) / seconds, cpu * 1000 / len(names), rss / 1024), classes


def summarize(side: str, rounds: list[Round]) -> Summary:
    rates = [entry.per_s for entry in rounds if entry.side == side]
    return Summary(side, min(rates), statistics.median(rates), max(rates),
                   statistics.median(entry.cpu_ms_per_image for entry in rounds if entry.side == side),
                   max(entry.peak_rss_mib for entry in rounds if entry.side == side))


def agreement(first: dict[str, tuple[int, int]], second: dict[str, tuple[int, int]], position: int) -> float:
    return sum(first[name][position] == second[name][position] for name in first) / len(first)


def bench_dataset(dataset: Dataset, arguments: argparse.Namespace) -> DatasetResult:
    """Alternating rounds of both sides on one dataset."""
    inputs = write_inputs(dataset, arguments.files, arguments.out)
    result = DatasetResult(dataset.name, str(dataset.bundle.relative_to(ROOT)), arguments.files)
    classes: dict[str, dict[str, tuple[int, int]]] = {}
    for index in range(arguments.rounds):
        for side in SIDES:
            entry, side_classes = run_round(side, index, dataset, inputs, arguments, arguments.out / "runs")
            classes.setdefault(side, side_classes)
            result.rounds.append(entry)
            print(f"  {dataset.name} round {index} {side:<8} {entry.per_s:8.1f} images/s "
                  f"({entry.seconds:.2f} s, {entry.cpu_ms_per_image:.2f} CPU ms/image, peak RSS {entry.peak_rss_mib:.0f} MiB)",
                  flush=True)
    result.summaries = {side: summarize(side, result.rounds) for side in SIDES}
    result.daemon_over_watcher = result.summaries["daemon"].per_s_median / result.summaries["watcher"].per_s_median
    result.input_top1_agreement = agreement(classes["daemon"], classes["watcher"], 0)
    result.purified_top1_agreement = agreement(classes["daemon"], classes["watcher"], 1)
    return result


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def print_table(results: list[DatasetResult], threads: int) -> None:
    print(f"\n{cpu_model()}, {os.cpu_count()} CPUs, {threads} engine / intra-op threads, max_batch 16")
    print(f"{'dataset':<9} {'side':<8} {'min/s':>8} {'median/s':>9} {'max/s':>8} {'CPU ms/image':>13} {'peak RSS MiB':>13}")
    for result in results:
        for side in SIDES:
            summary = result.summaries[side]
            print(f"{result.dataset:<9} {side:<8} {summary.per_s_min:8.1f} {summary.per_s_median:9.1f} "
                  f"{summary.per_s_max:8.1f} {summary.cpu_ms_per_image_median:13.2f} {summary.peak_rss_mib_max:13.1f}")
    for result in results:
        print(f"{result.dataset}: daemon / watcher (medians) {result.daemon_over_watcher:.2f}x; top-1 agreement "
              f"input {result.input_top1_agreement:.2%}, purified {result.purified_top1_agreement:.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--purifyd", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--datasets", default="mnist,cifar10")
    parser.add_argument("--watcher-io-threads", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=900, help="seconds one burst may take")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/out/e2e")
    arguments = parser.parse_args()
    arguments.purifyd = arguments.purifyd.resolve()
    arguments.out = arguments.out.resolve()
    load_before = os.getloadavg()
    results = []
    for name in arguments.datasets.split(","):
        print(f"{name}: {arguments.files} files, {arguments.rounds} rounds per side", flush=True)
        results.append(bench_dataset(DATASETS[name], arguments))
    load_after = os.getloadavg()
    report = {"cpu": cpu_model(), "cpus": os.cpu_count(), "threads": arguments.threads, "max_batch": 16,
              "max_delay_ms": 10, "watcher_io_threads": arguments.watcher_io_threads,
              "load_average_before": load_before, "load_average_after": load_after,
              "datasets": [asdict(result) for result in results]}
    (arguments.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print_table(results, arguments.threads)
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")


if __name__ == "__main__":
    main()
