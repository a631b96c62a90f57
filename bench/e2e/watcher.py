"""A Python + ONNX Runtime folder watcher doing purifyd's job: the end-to-end baseline.

It does for one inbox what the daemon does, written the way a competent Python engineer would
write it with numpy, Pillow and onnxruntime alone:

- learns of new files from inotify (a small ctypes wrapper: the daemon uses inotify too, and
  polling with os.scandir would add up to a poll interval of latency per burst and list the
  folder again and again while it is busy), and lists the inbox once at start and after a
  queue overflow;
- claims each file by os.rename into ``<spool>/claimed`` (dot-names, ``*.tmp`` and ``*.part``
  are in progress and left alone), at most ``--queue-capacity`` files in flight;
- reads, hashes and decodes it with Pillow on an I/O thread pool, checks it against the
  bundle's domain (``[input]`` channels and sizes: the bundles served here take one size);
- batches up to ``--max-batch`` claimed images, a batch leaving when full or when its oldest has
  waited ``--max-delay-ms`` (the daemon's max_batch and max_delay_ms; it batches decoded images);
- on one inference thread, reflect-pads the batch (centered) to the purifier's size multiple,
  runs purifier.onnx, crops and quantises the output to 8 bits, and runs classifier.onnx on the
  inputs and the purified images in one call (ONNX Runtime with ``intra_op_num_threads`` the
  daemon's engine thread count);
- on the pool again, encodes the purified PNG, writes it and its JSON report (the daemon's
  essential fields: input, bundle, output, batch, change, top-k of input and purified image,
  ``suspected_adversarial``) to dot-named temporary files in the outbox, fsyncs both, renames
  the PNG and then the report into place, deletes the claimed original and fsyncs the outbox.

A file that cannot be purified goes to ``<spool>/failed`` with ``<name>.error.json``. It has no
journal: a crash between the renames and the deletion leaves a claimed file that a restart does
not requeue (the daemon's spool recovers both cases).

Prints ``ready`` on stdout once the models are loaded and the inbox is watched; SIGTERM or
SIGINT finishes the files in flight and exits.
"""

import argparse
import ctypes
import hashlib
import io
import json
import math
import os
import queue
import select
import signal
import struct
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
EVENT_HEADER = struct.Struct("iIII")


class Inotify:
    """One inotify watch on a folder, read through libc by ctypes (no extra dependency)."""

    def __init__(self, folder: Path, mask: int) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if self.libc.inotify_add_watch(self.fd, os.fsencode(folder), ctypes.c_uint32(mask)) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")

    def read(self, timeout: float) -> tuple[list[str], bool]:
        """The names of the events that arrive within `timeout` seconds, and whether the kernel's
        queue overflowed (events were lost: the caller lists the folder)."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return [], False
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return [], False
        names, overflowed, offset = [], False, 0
        while offset < len(data):
            _, mask, _, length = EVENT_HEADER.unpack_from(data, offset)
            offset += EVENT_HEADER.size
            overflowed |= bool(mask & IN_Q_OVERFLOW)
            if length:
                names.append(os.fsdecode(data[offset:offset + length].rstrip(b"\0")))
            offset += length
        return names, overflowed

    def close(self) -> None:
        os.close(self.fd)


@dataclass(frozen=True)
class Bundle:
    """What the watcher needs of a bundle's manifest (bundle.toml)."""

    name: str
    version: str
    channels: int
    width: int
    height: int
    size_multiple: int
    purifier: Path
    purifier_sha256: str
    classifier: Path
    classifier_sha256: str
    labels: list[str]
    outputs_logits: bool
    mean: np.ndarray | None
    std: np.ndarray | None

    @property
    def padding(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Reflection padding (before, after) for height and width, centered, as purifyd pads a
        short image up to the next multiple."""
        def split(length: int) -> tuple[int, int]:
            extra = -length % self.size_multiple
            return extra // 2, extra - extra // 2
        return split(self.height), split(self.width)


def load_bundle(folder: Path) -> Bundle:
    """Reads bundle.toml; only the single-size, fully convolutional, reflect-padded bundles whose
    classifier takes the image's own size are served (models/mnist, models/cifar10 and the like),
    so that no resizing or tiling is needed, as in the daemon for these bundles."""
    manifest = tomllib.loads((folder / "bundle.toml").read_text())
    source, purifier, classifier = manifest["input"], manifest["purifier"], manifest["classifier"]
    width, height = source["trained_size"][1], source["trained_size"][0]
    if source["min_size"] != source["max_size"] or source["min_size"] != source["trained_size"]:
        raise ValueError("only bundles of one input size are served")
    if not purifier["fully_convolutional"] or purifier["padding"] != "reflect-centered":
        raise ValueError("only fully convolutional, reflect-centered purifiers are served")
    if classifier["input_size"] != source["trained_size"]:
        raise ValueError("only classifiers that take the trained size are served")
    normalised = "mean" in classifier or "std" in classifier
    channels = source["channels"]
    return Bundle(
        name=manifest["name"], version=manifest["version"], channels=channels, width=width, height=height,
        size_multiple=purifier["size_multiple"],
        purifier=folder / purifier["file"], purifier_sha256=purifier["sha256"].lower(),
        classifier=folder / classifier["file"], classifier_sha256=classifier["sha256"].lower(),
        labels=classifier["labels"], outputs_logits=classifier.get("output") == "logits",
        mean=np.array(classifier.get("mean", [0.0] * channels), np.float32).reshape(1, -1, 1, 1) if normalised else None,
        std=np.array(classifier.get("std", [1.0] * channels), np.float32).reshape(1, -1, 1, 1) if normalised else None)


@dataclass(frozen=True)
class Settings:
    """The watcher's configuration, mirroring an inbox of purifyd.toml."""

    inbox: Path
    outbox: Path
    spool: Path
    threads: int
    io_threads: int
    max_batch: int
    max_delay: float
    queue_capacity: int
    top_k: int
    drop_threshold: float
    spinning: bool


@dataclass
class Item:
    """One claimed file on its way through the watcher."""

    name: str
    claimed: Path
    started: float
    timings: dict[str, float] = field(default_factory=dict)
    input: dict = field(default_factory=dict)
    pixels: np.ndarray | None = None
    error: tuple[str, str] | None = None


class Failure(Exception):
    """A file that cannot be purified: its error code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def milliseconds(since: float) -> float:
    return (time.monotonic() - since) * 1000


def write_synced(path: Path, data: bytes) -> None:
    """Creates `path` (which must not exist), writes `data` and fsyncs it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_folder(path: Path) -> None:
    """fsyncs a folder so that the renames and unlinks in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def in_progress(name: str) -> bool:
    """Names a producer is still writing, which purifyd never reads either."""
    return name.startswith(".") or name.endswith((".tmp", ".part"))


class Models:
    """The purifier and classifier sessions, and the numerics around them (purifyd's)."""

    def __init__(self, bundle: Bundle, threads: int, spinning: bool) -> None:
        self.bundle = bundle
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        providers = ["CPUExecutionProvider"]
        self.purifier = ort.InferenceSession(str(bundle.purifier), options, providers=providers)
        self.classifier = ort.InferenceSession(str(bundle.classifier), options, providers=providers)
        self.purifier_input = self.purifier.get_inputs()[0].name
        self.classifier_input = self.classifier.get_inputs()[0].name

    def purify(self, images: np.ndarray) -> np.ndarray:
        """NHWC uint8 images in, purified NHWC uint8 images of the same size out: [0, 1] floats,
        reflect-padded to the size multiple, cropped back, clamped (NaN to 0) and rounded."""
        (top, bottom), (left, right) = self.bundle.padding
        tensor = images.transpose(0, 3, 1, 2).astype(np.float32) / 255
        tensor = np.pad(tensor, ((0, 0), (0, 0), (top, bottom), (left, right)), mode="reflect")
        output = self.purifier.run(None, {self.purifier_input: tensor})[0]
        output = output[:, :, top:top + self.bundle.height, left:left + self.bundle.width]
        output = np.nan_to_num(output, nan=0.0).clip(0, 1) * 255 + 0.5
        return output.astype(np.uint8).transpose(0, 2, 3, 1)

    def classify(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities of NHWC uint8 images (normalised if the manifest says so)."""
        tensor = images.transpose(0, 3, 1, 2).astype(np.float32) / 255
        if self.bundle.mean is not None:
            tensor = (tensor - self.bundle.mean) / self.bundle.std
        output = self.classifier.run(None, {self.classifier_input: np.ascontiguousarray(tensor)})[0].astype(np.float64)
        if self.bundle.outputs_logits:
            output = np.exp(output - output.max(axis=1, keepdims=True))
            output /= output.sum(axis=1, keepdims=True)
        return output


class Watcher:
    """Claims, batches, purifies, classifies and commits the files of one inbox."""

    def __init__(self, bundle: Bundle, settings: Settings) -> None:
        self.bundle = bundle
        self.settings = settings
        self.models = Models(bundle, settings.threads, settings.spinning)
        self.claimed_dir = settings.spool / "claimed"
        self.failed_dir = settings.spool / "failed"
        for folder in (settings.outbox, self.claimed_dir, self.failed_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.pool = ThreadPoolExecutor(settings.io_threads, thread_name_prefix="watcher-io")
        self.slots = threading.BoundedSemaphore(settings.queue_capacity)
        self.batches: queue.Queue[list[tuple[Item, Future]] | None] = queue.Queue(maxsize=4)
        self.stopping = threading.Event()
        self.sequence = 0
        self.bundle_report = {"name": bundle.name, "version": bundle.version,
                              "purifier_sha256": bundle.purifier_sha256, "classifier_sha256": bundle.classifier_sha256}

    def submit(self, task: Callable[..., None], *arguments: object) -> None:
        """Runs `task` on the pool; a bug in it stops the watcher rather than losing a file silently."""
        self.pool.submit(task, *arguments).add_done_callback(stop_on_exception)

    # Claiming and batching (main thread)

    def run(self) -> None:
        """Watches the inbox until SIGTERM or SIGINT, then drains what is in flight."""
        notify = Inotify(self.settings.inbox, IN_MOVED_TO | IN_CLOSE_WRITE)
        inference = threading.Thread(target=self.infer_batches, name="watcher-inference")
        inference.start()
        print("ready", flush=True)
        pending: list[tuple[Item, Future]] = []
        names = sorted(entry.name for entry in os.scandir(self.settings.inbox))
        while not self.stopping.is_set():
            for name in names:
                if not in_progress(name) and (item := self.claim(name)) is not None:
                    pending.append((item, self.pool.submit(self.load, item)))
                    if len(pending) == self.settings.max_batch:
                        self.batches.put(pending)
                        pending = []
            timeout = 0.2 if not pending else pending[0][0].started + self.settings.max_delay - time.monotonic()
            if pending and timeout <= 0:
                self.batches.put(pending)
                pending = []
                timeout = 0.2
            names, overflowed = notify.read(timeout)
            if overflowed:
                names = sorted(entry.name for entry in os.scandir(self.settings.inbox))
        if pending:
            self.batches.put(pending)
        self.batches.put(None)
        inference.join()
        self.pool.shutdown(wait=True)
        notify.close()

    def claim(self, name: str) -> Item | None:
        """Renames an inbox entry into the spool once a slot is free; None if it is gone."""
        self.slots.acquire()
        self.sequence += 1
        claimed = self.claimed_dir / f"{self.sequence:09d}-{name}"
        try:
            os.rename(self.settings.inbox / name, claimed)
        except FileNotFoundError:
            self.slots.release()
            return None
        return Item(name=name, claimed=claimed, started=time.monotonic())

    # Reading and decoding (pool)

    def load(self, item: Item) -> None:
        """Reads, hashes, decodes and checks one claimed file; a failure is kept on the item."""
        try:
            data = item.claimed.read_bytes()
            item.timings["read"] = milliseconds(item.started)
            decode_start = time.monotonic()
            item.pixels = self.decode(data, item)
            item.timings["decode"] = milliseconds(decode_start)
        except Failure as failure:
            item.error = (failure.code, str(failure))
        except OSError as error:
            item.error = ("io", str(error))

    def decode(self, data: bytes, item: Item) -> np.ndarray:
        """HWC uint8 pixels in the bundle's layout; fills the report's `input`."""
        if not data:
            raise Failure("empty", "the file is empty")
        try:
            image = Image.open(io.BytesIO(data))
            if image.format not in ("PNG", "JPEG"):
                raise Failure("unsupported", f"{image.format} is not PNG or JPEG")
            image.load()
        except Failure:
            raise
        except Exception as error:
            raise Failure("corrupt", f"cannot decode: {error}") from error
        item.input = {"name": item.name, "path": str(self.settings.inbox / item.name), "bytes": len(data),
                      "sha256": hashlib.sha256(data).hexdigest(), "format": image.format.lower(),
                      "width": image.width, "height": image.height, "channels": len(image.getbands())}
        if image.size != (self.bundle.width, self.bundle.height):
            raise Failure("out_of_domain", f"{image.width}x{image.height} is not the bundle's "
                                           f"{self.bundle.width}x{self.bundle.height}")
        pixels = np.asarray(image.convert("L" if self.bundle.channels == 1 else "RGB"))
        return pixels.reshape(self.bundle.height, self.bundle.width, self.bundle.channels)

    # Inference (one thread)

    def infer_batches(self) -> None:
        """Purifies and classifies each batch, then hands its images to the pool to commit."""
        while (batch := self.batches.get()) is not None:
            for _, future in batch:
                future.result()
            good = [item for item, _ in batch if item.error is None]
            for item, _ in batch:
                if item.error is not None:
                    self.submit(self.fail, item)
            if not good:
                continue
            dequeued = time.monotonic()
            images = np.stack([item.pixels for item in good])
            purified = self.models.purify(images)
            purify_ms = milliseconds(dequeued)
            classify_start = time.monotonic()
            probabilities = self.models.classify(np.concatenate([images, purified]))
            classify_ms = milliseconds(classify_start)
            model_size = (self.bundle.height + sum(self.bundle.padding[0]), self.bundle.width + sum(self.bundle.padding[1]))
            batch_report = {"size": len(good), "model_width": model_size[1], "model_height": model_size[0]}
            for index, item in enumerate(good):
                item.timings.update(batch_wait=(dequeued - item.started) * 1000 - item.timings["read"] - item.timings["decode"],
                                    purify=purify_ms, classify=classify_ms)
                verdict = self.classification(probabilities[index], probabilities[len(good) + index])
                self.submit(self.commit, item, purified[index], batch_report, verdict)

    def classification(self, before: np.ndarray, after: np.ndarray) -> dict:
        """The report's `classification`: purifyd's rule for `suspected_adversarial`."""
        def top(probabilities: np.ndarray) -> list[dict]:
            order = np.argsort(-probabilities, kind="stable")[:self.settings.top_k]
            return [{"label": self.bundle.labels[i], "index": int(i), "probability": float(probabilities[i])} for i in order]
        input_top, purified_top = top(before), top(after)
        first = input_top[0]["index"]
        agree = first == purified_top[0]["index"]
        drop = float(before[first] - after[first])
        return {"input": input_top, "purified": purified_top, "agree": agree, "top1_probability_drop": drop,
                "probability_drop_threshold": self.settings.drop_threshold,
                "suspected_adversarial": not agree or drop > self.settings.drop_threshold}

    # Committing (pool)

    def commit(self, item: Item, purified: np.ndarray, batch: dict, classification: dict) -> None:
        """Encodes the purified PNG and commits it and its report: temporary files, fsync,
        rename (report last), then deletes the claimed original."""
        try:
            encode_start = time.monotonic()
            encoded = io.BytesIO()
            Image.fromarray(purified.squeeze(axis=2) if purified.shape[2] == 1 else purified).save(encoded, format="PNG")
            png = encoded.getvalue()
            item.timings["encode"] = milliseconds(encode_start)
            write_start = time.monotonic()
            output_name = f"{Path(item.name).stem}.png"
            report = {"schema_version": 1, "status": "purified", "input": item.input, "bundle": self.bundle_report,
                      "output": {"path": str(self.settings.outbox / output_name), "format": "png", "bytes": len(png),
                                 "width": self.bundle.width, "height": self.bundle.height},
                      "batch": batch, "timings_ms": item.timings, "change": change(item.pixels, purified),
                      "classification": classification}
            self.publish(item, {output_name: png}, report, output_name + ".json", write_start)
        except OSError as error:
            print(f"cannot commit {item.name}, left claimed as {item.claimed}: {error}", file=sys.stderr, flush=True)

    def fail(self, item: Item) -> None:
        """Moves a claimed file that cannot be purified to failed/ with `<name>.error.json`."""
        code, message = item.error
        report = {"schema_version": 1, "status": "failed", "input": item.input or {"name": item.name, "path": str(item.claimed)},
                  "bundle": self.bundle_report, "error": {"code": code, "message": message}}
        target = self.failed_dir / f"{item.claimed.name}"
        os.rename(item.claimed, target)
        self.publish(item, {}, report, target.name + ".error.json", time.monotonic(), folder=self.failed_dir,
                     remove_original=False)

    def publish(self, item: Item, outputs: dict[str, bytes], report: dict, report_name: str, write_start: float,
                folder: Path | None = None, remove_original: bool = True) -> None:
        """Writes and fsyncs the outputs and the report under dot-names, renames them into
        `folder` (the outbox by default) with the report last, removes the original, fsyncs the
        folder, and frees the file's slot."""
        folder = folder or self.settings.outbox
        try:
            temporary = [(folder / f".watcher-{item.claimed.name}.{index}", folder / name, data)
                         for index, (name, data) in enumerate(outputs.items())]
            for path, _, data in temporary:
                write_synced(path, data)
            report["timings_ms"] = dict(report.get("timings_ms", {}), write=milliseconds(write_start),
                                        total=milliseconds(item.started))
            report_temporary = folder / f".watcher-{item.claimed.name}.report"
            write_synced(report_temporary, json.dumps(report, indent=2).encode())
            for path, final, _ in temporary:
                os.rename(path, final)
            os.rename(report_temporary, folder / report_name)
            if remove_original:
                os.unlink(item.claimed)
            sync_folder(folder)
        finally:
            self.slots.release()


def stop_on_exception(future: Future) -> None:
    """Sends this process SIGTERM when a pool task raised."""
    if (error := future.exception()) is not None:
        print(f"watcher: unexpected {error!r}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)


def change(before: np.ndarray, after: np.ndarray) -> dict:
    """L2, L∞ and PSNR between input and purified image over [0, 1] samples (the report's)."""
    difference = after.astype(np.int32) - before.astype(np.int32)
    squares = float(np.square(difference).sum())
    mean_square = squares / (255 * 255) / difference.size
    return {"l2": math.sqrt(squares) / 255, "linf": float(np.abs(difference).max()) / 255,
            "psnr_db": 10 * math.log10(1 / mean_square) if mean_square > 0 else None, "samples": int(difference.size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--inbox", required=True, type=Path)
    parser.add_argument("--outbox", required=True, type=Path)
    parser.add_argument("--spool", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="ONNX Runtime intra-op threads")
    parser.add_argument("--io-threads", type=int, default=4, help="read, decode, encode and write pool")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-delay-ms", type=float, default=10)
    parser.add_argument("--queue-capacity", type=int, default=256)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--drop-threshold", type=float, default=0.5)
    parser.add_argument("--spinning", action="store_true",
                        help="let ONNX Runtime's threads spin between operators (off: they sleep, as "
                             "purifyd's do under OMP_WAIT_POLICY=PASSIVE)")
    arguments = parser.parse_args()
    settings = Settings(inbox=arguments.inbox, outbox=arguments.outbox, spool=arguments.spool,
                        threads=arguments.threads, io_threads=arguments.io_threads, max_batch=arguments.max_batch,
                        max_delay=arguments.max_delay_ms / 1000, queue_capacity=arguments.queue_capacity,
                        top_k=arguments.top_k, drop_threshold=arguments.drop_threshold, spinning=arguments.spinning)
    watcher = Watcher(load_bundle(arguments.bundle), settings)

    def stop(_signal: int, _frame: object) -> None:
        watcher.stopping.set()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    watcher.run()


if __name__ == "__main__":
    main()
