#!/usr/bin/env python3
"""Engine benchmark: PurifyEngine against ONNX Runtime and OpenVINO on the same ONNX files.

The models: the shipped bundles' purifiers and classifiers (models/*/; a purifier at its padded
trained size), and the ngf=64 residual U-Net (the shipped purifier's family, random weights) at
3x32x32 (depth 5, 0.333 GFLOP/image) and 3x256x256 (depth 8, 22.56 GFLOP/image), exported with
opset 17 and a dynamic batch axis. Each is timed at batch 1 and 16, alternating between the
runtimes for --rounds rounds and keeping each one's best round:
- ONNX Runtime (Python, intra-op threads = --threads), with intra-op spinning on and off (best kept);
- OpenVINO on the CPU in float32 (INFERENCE_PRECISION_HINT=f32, LATENCY hint, --threads threads),
  and in bfloat16 where the CPU has it natively (OPTIMIZATION_CAPABILITIES lists BF16);
- the Swift engine (release build of purify-engine-bench, same thread count) under each of oneDNN's
  OpenMP wait policies: OMP_WAIT_POLICY=active (spin), passive (sleep at once), and unset (GNU
  OpenMP spins briefly, then sleeps); each is a column, since the daemon runs with one of them.
Ratios are the engine's best policy, and its `passive` (the systemd unit's), over each peer.
With --busy-cores N, N processes spin on the CPU throughout, as other services do on a machine
the daemon shares: the wait policies differ most there.

    make bench-engine                     # or:
    .venv/bin/python bench/engine/bench.py --threads 2 --engine .build-engine/release/purify-engine-bench
"""
import argparse
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time
import tomllib

import numpy as np
import onnxruntime as ort
import openvino as ov
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Tests" / "PurifyEngineTests" / "Fixtures"))
from model_family import ResidualUNet, export, randomize_batch_norm  # noqa: E402

SYNTHETIC = {  # side → (depth, GFLOP per image)
    32: (5, 0.333),
    256: (8, 22.56),
}
POLICIES = ("active", "passive", "default")


@dataclasses.dataclass(frozen=True)
class Case:
    """One model at one input shape (C, H, W)."""

    name: str
    path: pathlib.Path
    shape: tuple[int, int, int]
    gflop: float | None = None


def synthetic(side: int, out: pathlib.Path) -> Case:
    path = out / f"unet_ngf64_{side}.onnx"
    if not path.exists():
        torch.manual_seed(side)
        model = ResidualUNet(channels=3, ngf=64, depth=SYNTHETIC[side][0])
        randomize_batch_norm(model, torch.Generator().manual_seed(side))
        export(model, str(path), torch.rand(1, 3, side, side), spatial_dynamic=False)
    return Case("synthetic ngf=64 U-Net", path, (3, side, side), SYNTHETIC[side][1])


def shipped(bundle: pathlib.Path) -> list[Case]:
    """A bundle's purifier at its trained size padded to the size multiple, and its classifier."""
    with open(bundle / "bundle.toml", "rb") as f:
        manifest = tomllib.load(f)
    channels = manifest["input"]["channels"]
    multiple = manifest["purifier"].get("size_multiple", 1)
    height, width = (-(-side // multiple) * multiple for side in manifest["input"]["trained_size"])
    cases = [Case(f"`models/{bundle.name}` purifier", bundle / manifest["purifier"]["file"], (channels, height, width))]
    if "classifier" in manifest:
        ch, cw = manifest["classifier"]["input_size"]
        cases.append(Case(f"`models/{bundle.name}` classifier", bundle / manifest["classifier"]["file"], (channels, ch, cw)))
    return cases


def throughput(run, batch: int, seconds: float) -> float:
    for _ in range(3):
        run()
    runs, start = 0, time.perf_counter()
    while True:
        run()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return runs * batch / elapsed


def time_onnxruntime(case: Case, batch: int, threads: int, seconds: float, spinning: bool) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = ort.InferenceSession(str(case.path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((batch, *case.shape), dtype=np.float32)
    name = session.get_inputs()[0].name
    return throughput(lambda: session.run(None, {name: x}), batch, seconds)


def openvino_bf16_supported(core) -> bool:
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def time_openvino(core, case: Case, batch: int, threads: int, seconds: float, precision: str) -> float:
    model = core.read_model(str(case.path))
    model.reshape([batch, *case.shape])
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                                                 "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1})
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).random((batch, *case.shape), dtype=np.float32)
    return throughput(lambda: request.infer({0: x}), batch, seconds)


def time_engine(engine: str, case: Case, batch: int, threads: int, seconds: float, wait_policy: str,
                profile: bool) -> dict:
    command = [engine, str(case.path), "--shape", ",".join(map(str, case.shape)), "--batches", str(batch),
               "--threads", str(threads), "--seconds", str(seconds)] + (["--profile"] if profile else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop("OMP_WAIT_POLICY", None)
    if wait_policy != "default":
        env["OMP_WAIT_POLICY"] = wait_policy
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--engine", default=str(ROOT / ".build-engine" / "release" / "purify-engine-bench"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "engine"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--sides", default="32,256", help="synthetic U-Net sides to time ('' for none)")
    parser.add_argument("--bundles", default="mnist,fashion-mnist,cifar10", help="shipped bundles to time ('' for none)")
    parser.add_argument("--profile", action="store_true", help="print time and GFLOP/s per kind of step")
    parser.add_argument("--busy-cores", type=int, default=0, help="processes that spin throughout (a shared machine)")
    args = parser.parse_args()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy_cores)]
    try:
        run(args)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def run(args: argparse.Namespace) -> None:
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    core = ov.Core()
    precisions = ["f32"] + (["bf16"] if openvino_bf16_supported(core) else [])

    cases = [c for b in filter(None, args.bundles.split(",")) for c in shipped(ROOT / "models" / b)]
    cases += [synthetic(int(side), out) for side in filter(None, args.sides.split(","))]
    rows = []
    for case in cases:
        for batch in (1, 16):
            seconds = args.seconds if case.shape[1] <= 64 else max(args.seconds, 4.0)
            best = {"ort": 0.0, **{f"ov {p}": 0.0 for p in precisions}, **{p: 0.0 for p in POLICIES}}
            profile = None
            for _ in range(args.rounds):
                for spinning in (True, False):
                    best["ort"] = max(best["ort"], time_onnxruntime(case, batch, args.threads, seconds, spinning))
                for precision in precisions:
                    rate = time_openvino(core, case, batch, args.threads, seconds, precision)
                    best[f"ov {precision}"] = max(best[f"ov {precision}"], rate)
                for policy in POLICIES:
                    result = time_engine(args.engine, case, batch, args.threads, seconds, policy, args.profile)
                    if result["images_per_second"] > best[policy]:
                        best[policy] = result["images_per_second"]
                        if policy == "passive":
                            profile = result.get("profile")
            rows.append((case, batch, best, profile))
            print(f"  measured {case.name} {'×'.join(map(str, case.shape))} batch {batch}", file=sys.stderr)

    print(f"\nPurifyEngine vs ONNX Runtime {ort.__version__} and OpenVINO {ov.__version__.split('-')[0]}, "
          f"{args.threads} threads, images/s, best of {args.rounds} alternating rounds"
          f"{f', {args.busy_cores} cores kept busy by spinning processes' if args.busy_cores else ''}; load average "
          f"{os.getloadavg()[0]:.1f} at the end; OpenVINO bf16 "
          f"{'measured' if 'bf16' in precisions else 'not measured: this CPU has no native bfloat16'}")
    peers = ["ort"] + [f"ov {p}" for p in precisions]
    titles = {"ort": "ORT", "ov f32": "OpenVINO fp32", "ov bf16": "OpenVINO bf16"}
    print("| model | input | batch | engine active | engine passive | engine default | "
          + " | ".join(titles[p] for p in peers) + " | "
          + " | ".join(f"best / {titles[p]}" for p in peers) + " | passive / ORT |")
    print("|---|---|---|---|---|---|" + "---|" * (2 * len(peers) + 1))
    for case, batch, best, _ in rows:
        engine = max(best[p] for p in POLICIES)
        print(f"| {case.name} | {'×'.join(map(str, case.shape))} | {batch} | "
              + " | ".join(f"{best[p]:.1f}" for p in POLICIES) + " | "
              + " | ".join(f"{best[p]:.1f}" for p in peers) + " | "
              + " | ".join(f"{engine / best[p]:.2f}×" for p in peers) + f" | {best['passive'] / best['ort']:.2f}× |")
    if args.profile:
        for case, batch, _, profile in rows:
            print(f"\nwhere the time goes (engine, passive), {case.name} {'×'.join(map(str, case.shape))} batch {batch} "
                  "(per run, synchronised after every step):")
            for entry in profile or []:
                print(f"  {entry['name']:>14}: {entry['milliseconds_per_run']:8.3f} ms"
                      f"  {entry['gflops_per_second']:7.1f} GFLOP/s")


if __name__ == "__main__":
    main()
