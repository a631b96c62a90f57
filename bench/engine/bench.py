#!/usr/bin/env python3
"""Engine benchmark: PurifyEngine against ONNX Runtime on the same ONNX files.

Builds the ngf=64 residual U-Net (the shipped purifier's family, random weights) for 3x32x32
(depth 5, 0.333 GFLOP/image) and 3x256x256 (depth 8, 22.56 GFLOP/image), exports both with
opset 17 and a dynamic batch axis, then times ONNX Runtime (Python, intra-op threads = --threads)
and the Swift engine (release build of purify-engine-bench, same thread count) at batch 1 and 16,
alternating between the two for --rounds rounds and keeping each one's best round. Each side
gets both of its thread-wait policies (ONNX Runtime: intra-op spinning on/off; oneDNN's OpenMP:
OMP_WAIT_POLICY=active/passive), since which wins depends on how busy the machine is.

    make bench-engine                     # or:
    .venv/bin/python bench/engine/bench.py --threads 2 --engine .build-engine/release/purify-engine-bench
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Tests" / "PurifyEngineTests" / "Fixtures"))
from model_family import ResidualUNet, export, randomize_batch_norm  # noqa: E402

MODELS = {  # side → (depth, GFLOP per image)
    32: (5, 0.333),
    256: (8, 22.56),
}


def build(side: int, out: pathlib.Path) -> pathlib.Path:
    path = out / f"unet_ngf64_{side}.onnx"
    if not path.exists():
        torch.manual_seed(side)
        model = ResidualUNet(channels=3, ngf=64, depth=MODELS[side][0])
        randomize_batch_norm(model, torch.Generator().manual_seed(side))
        export(model, str(path), torch.rand(1, 3, side, side), spatial_dynamic=False)
    return path


def time_onnxruntime(path: pathlib.Path, side: int, batch: int, threads: int, seconds: float,
                     spinning: bool) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((batch, 3, side, side), dtype=np.float32)
    name = session.get_inputs()[0].name
    for _ in range(3):
        session.run(None, {name: x})
    runs, start = 0, time.perf_counter()
    while True:
        session.run(None, {name: x})
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return runs * batch / elapsed


def time_engine(engine: str, path: pathlib.Path, side: int, batch: int, threads: int, seconds: float,
                wait_policy: str, profile: bool) -> dict:
    command = [engine, str(path), "--shape", f"3,{side},{side}", "--batches", str(batch),
               "--threads", str(threads), "--seconds", str(seconds)] + (["--profile"] if profile else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY=wait_policy)
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--engine", default=str(ROOT / ".build-engine" / "release" / "purify-engine-bench"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "engine"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--sides", default="32,256")
    parser.add_argument("--profile", action="store_true", help="print time and GFLOP/s per kind of step")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows = []
    for side in map(int, args.sides.split(",")):
        path = build(side, out)
        for batch in (1, 16):
            seconds = args.seconds if side == 32 else max(args.seconds, 4.0)
            best_ort, best_engine, profile = 0.0, 0.0, None
            for _ in range(args.rounds):
                for spinning in (True, False):
                    best_ort = max(best_ort, time_onnxruntime(path, side, batch, args.threads, seconds, spinning))
                for policy in ("active", "passive"):
                    result = time_engine(args.engine, path, side, batch, args.threads, seconds, policy, args.profile)
                    if result["images_per_second"] > best_engine:
                        best_engine, profile = result["images_per_second"], result.get("profile")
            rows.append((side, batch, best_ort, best_engine, profile))
            print(f"  measured 3x{side}x{side} batch {batch}", file=sys.stderr)

    print(f"\nPurifyEngine vs ONNX Runtime {ort.__version__}, ngf=64 residual U-Net, {args.threads} threads, "
          f"best of {args.rounds} alternating rounds (each with both wait policies); load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"| input | batch | ORT img/s | engine img/s | engine ms/img | ratio | engine GFLOP/s |")
    print(f"|---|---|---|---|---|---|---|")
    for side, batch, ort_rate, engine_rate, _ in rows:
        gflop = MODELS[side][1]
        print(f"| 3×{side}×{side} | {batch} | {ort_rate:.1f} | {engine_rate:.1f} | {1000 / engine_rate:.3f} | "
              f"{engine_rate / ort_rate:.2f}× | {engine_rate * gflop:.0f} |")
    if args.profile:
        for side, batch, _, _, profile in rows:
            print(f"\nwhere the time goes, 3×{side}×{side} batch {batch} (per run, synchronised after every step):")
            for entry in profile or []:
                print(f"  {entry['name']:>14}: {entry['milliseconds_per_run']:8.3f} ms"
                      f"  {entry['gflops_per_second']:7.1f} GFLOP/s")


if __name__ == "__main__":
    main()
