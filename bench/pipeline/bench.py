#!/usr/bin/env python3
"""Pipeline benchmark: `purify` over 10,000 MNIST-size PNGs and 500 256x256 JPEGs.

Writes the inputs once under bench/out/pipeline/ (the first 10,000 MNIST test digits as PNG; 500
CIFAR-10 test images upscaled to 256x256 and saved as JPEG q90), then for each set runs the
release `purify` under /usr/bin/time -v at --batch B and reads files/s from its --json summary
and the peak RSS from time, alternating --rounds times with the engine-only reference and keeping
the best round of each (the machine is shared). purify runs with OMP_WAIT_POLICY=passive (its
four threads share the cores with oneDNN's OpenMP team, whose spinning waits otherwise take
CPU from them); the engine-only side gets the better of libgomp's default and passive. The
engine-only reference times the same ONNX files with
purify-engine-bench at the same batch size: the purifier at B images, the classifier at 2B (the
pipeline classifies each input and its purified image in one run), so engine-only files/s =
1 / (1/purifier_ips + 2/classifier_ips), or purifier_ips alone with --no-classifier.

The 256x256 colour JPEGs lie outside the gray MNIST bundle's domain (gray, 28x28), which purify
rejects by default: they run with --input-policy tile, which purifies each colour channel through
the gray purifier on its own (one 256x256 tile per channel at the default --tile-side 256), in
batches of at most --batch-pixels (default 2^19 = 8 such tiles). Their engine-only reference does
the same work: the purifier at min(B, 2^19 / 256^2) images, three runs per file, so engine-only
files/s = 1 / (3/purifier_ips + 2/classifier_ips).

The bundle is models/mnist when it exists; otherwise a stand-in with the same architecture
(UNetGenerator with the MNIST generator_config, PlainCNN classifier), random weights, is exported
to bench/out/pipeline/standin-mnist and the output says so.

    make bench-pipeline                   # or:
    .venv/bin/python bench/pipeline/bench.py --purify .build-pipeline/release/purify \\
        --engine .build-pipeline/release/purify-engine-bench --threads 2 --batch 16
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "out" / "pipeline"
DATA = pathlib.Path(os.environ.get("PURIFYD_DATA", ROOT.parent / "shared" / "data"))


def make_inputs() -> dict[str, pathlib.Path]:
    sets = {"mnist-png": OUT / "inputs" / "mnist-png", "photo-jpeg": OUT / "inputs" / "photo-jpeg"}
    if not (sets["mnist-png"] / "09999.png").exists():
        sets["mnist-png"].mkdir(parents=True, exist_ok=True)
        images = np.load(DATA / "mnist" / "test.npz")["images"]
        for index in range(10_000):
            Image.fromarray(images[index, :, :, 0]).save(sets["mnist-png"] / f"{index:05d}.png")
    if not (sets["photo-jpeg"] / "0499.jpg").exists():
        sets["photo-jpeg"].mkdir(parents=True, exist_ok=True)
        images = np.load(DATA / "cifar10" / "test.npz")["images"]
        for index in range(500):
            Image.fromarray(images[index]).resize((256, 256), Image.BICUBIC).save(
                sets["photo-jpeg"] / f"{index:04d}.jpg", quality=90)
    return sets


def stand_in_bundle() -> pathlib.Path:
    """The MNIST bundle's architecture with random weights, for when models/mnist is absent."""
    folder = OUT / "standin-mnist"
    if (folder / "bundle.toml").exists():
        return folder
    sys.path.insert(0, str(ROOT / "training"))
    import torch
    from dataclasses import replace
    from purifyd_train.bundles.export import WithSoftmax, bundle_toml, sha256, to_onnx
    from purifyd_train.data.datasets import spec
    from purifyd_train.models.networks import PlainCNN, UNetGenerator
    from purifyd_train.training.gan import generator_config

    torch.manual_seed(0)
    ds = replace(spec("mnist"), name="standin-mnist", note="random weights, shipped architecture (benchmark)")
    config = generator_config("mnist", residual=True)
    generator = UNetGenerator(1, config["ngf"], config["cap"], tuple(config["res_blocks"])).eval()
    classifier = WithSoftmax(PlainCNN(1, 28)).eval()
    purifier = to_onnx(generator, torch.rand(2, 1, 32, 32), "image", "purified", True)
    probabilities = to_onnx(classifier, torch.rand(2, 1, 28, 28), "image", "probabilities", False)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "purifier.onnx").write_bytes(purifier)
    (folder / "classifier.onnx").write_bytes(probabilities)
    (folder / "bundle.toml").write_text(bundle_toml(ds, "0.0.0", generator.multiple, sha256(purifier),
                                                    sha256(probabilities), "cnn"))
    return folder


def with_wait_policy(policy: str | None) -> dict:
    """The environment with OMP_WAIT_POLICY set to `policy` (None: unset, libgomp's default)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    return env


# purify's default --batch-pixels: the most pixels in one purifier batch.
BATCH_PIXELS = 1 << 19


def run_purify(purify: str, bundle: pathlib.Path, inputs: pathlib.Path, batch: int, threads: int,
               classify: bool, policy: str | None, input_policy: str | None) -> dict:
    out = OUT / "outputs" / inputs.name
    shutil.rmtree(out, ignore_errors=True)
    command = ["/usr/bin/time", "-v", purify, "--bundle", str(bundle), str(inputs), "--out", str(out), "--json",
               "--batch", str(batch), "--threads", str(threads)] + ([] if classify else ["--no-classifier"])
    if input_policy:
        command += ["--input-policy", input_policy]
    done = subprocess.run(command, capture_output=True, text=True, env=with_wait_policy(policy))
    if done.returncode != 0:
        raise SystemExit(f"purify failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return {"files": summary["inputs"], "failed": summary["failed"], "seconds": summary["seconds"],
            "files_per_second": summary["files_per_second"], "peak_rss_mib": rss / 1024,
            "agreement_rate": summary["agreement_rate"]}


def engine_images_per_second(engine: str, model: pathlib.Path, shape: str, batch: int, threads: int,
                             seconds: float) -> tuple[float, float]:
    """Images/s of one model at one batch size under its better OpenMP wait policy (libgomp's
    default or passive), and the process's peak RSS in MiB."""
    best = (0.0, 0.0)
    for policy in (None, "passive"):
        done = subprocess.run(["/usr/bin/time", "-v", engine, str(model), "--shape", shape, "--batches", str(batch),
                               "--threads", str(threads), "--seconds", str(seconds)], capture_output=True, text=True,
                              check=True, env=with_wait_policy(policy))
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
        best = max(best, (json.loads(done.stdout.strip().splitlines()[-1])["images_per_second"], rss / 1024))
    return best


def engine_only(engine: str, bundle: pathlib.Path, side: int, batch: int, threads: int, seconds: float,
                classify: bool, planes: int) -> dict:
    """The engine's files/s on the same work as the pipeline: `planes` purifier runs per file
    (each colour channel of a colour image through a gray purifier), in batches of at most
    BATCH_PIXELS pixels, and the classifier twice per file."""
    purifier_batch = max(1, min(batch, BATCH_PIXELS // (side * side)))
    purifier, purifier_rss = engine_images_per_second(engine, bundle / "purifier.onnx", f"1,{side},{side}",
                                                      purifier_batch, threads, seconds)
    result = {"purifier_images_per_second": purifier, "purifier_peak_rss_mib": purifier_rss,
              "purifier_batch": purifier_batch, "purifier_runs_per_file": planes,
              "files_per_second": purifier / planes}
    if classify:
        classifier, _ = engine_images_per_second(engine, bundle / "classifier.onnx", "1,28,28", 2 * batch, threads,
                                                 seconds)
        result.update({"classifier_images_per_second": classifier,
                       "files_per_second": 1 / (planes / purifier + 2 / classifier)})
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--purify", default=str(ROOT / ".build-pipeline" / "release" / "purify"))
    p.add_argument("--engine", default=str(ROOT / ".build-pipeline" / "release" / "purify-engine-bench"))
    p.add_argument("--bundle", type=pathlib.Path, default=None, help="default: models/mnist, else a stand-in")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0, help="engine-only timing per model")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each side counts")
    p.add_argument("--omp-wait-policy", default="passive",
                   help="OMP_WAIT_POLICY for purify ('' for libgomp's default); the engine-only side gets the "
                        "better of default and passive")
    p.add_argument("--no-classifier", action="store_true")
    args = p.parse_args()
    bundle = args.bundle or (ROOT / "models" / "mnist" if (ROOT / "models" / "mnist" / "bundle.toml").exists()
                             else stand_in_bundle())
    sets = make_inputs()
    classify = not args.no_classifier
    results = {"bundle": str(bundle.relative_to(ROOT) if bundle.is_relative_to(ROOT) else bundle),
               "batch": args.batch, "threads": args.threads, "classifier": classify,
               "purify_omp_wait_policy": args.omp_wait_policy or "default", "sets": {}}
    # (set, folder, purifier side, purifier runs per file, --input-policy): the colour JPEGs are
    # outside the gray bundle's domain and go through it channel by channel.
    for name, folder, side, planes, input_policy in [("mnist-png", sets["mnist-png"], 32, 1, None),
                                                     ("photo-jpeg", sets["photo-jpeg"], 256, 3, "tile")]:
        # Alternate pipeline and engine-only runs and keep each one's best round: the machine is
        # shared, and a round that lost the cores says nothing about either side.
        pipeline_rounds, engine_rounds = [], []
        for _ in range(args.rounds):
            pipeline_rounds.append(run_purify(args.purify, bundle, folder, args.batch, args.threads, classify,
                                              args.omp_wait_policy or None, input_policy))
            engine_rounds.append(engine_only(args.engine, bundle, side, args.batch, args.threads, args.seconds, classify,
                                             planes))
        measured = max(pipeline_rounds, key=lambda r: r["files_per_second"])
        reference = max(engine_rounds, key=lambda r: r["files_per_second"])
        measured.update({"input_policy": input_policy or "reject (default)",
                         "rounds_files_per_second": [r["files_per_second"] for r in pipeline_rounds],
                         "engine_only": reference,
                         "engine_only_rounds_files_per_second": [r["files_per_second"] for r in engine_rounds],
                         "ratio_to_engine_only": measured["files_per_second"] / reference["files_per_second"]})
        results["sets"][name] = measured
        print(f"{name}: {measured['files']} files, {measured['files_per_second']:.1f} files/s, engine only "
              f"{reference['files_per_second']:.1f} files/s, ratio {measured['ratio_to_engine_only']:.2f}, peak RSS "
              f"{measured['peak_rss_mib']:.0f} MiB (engine only, purifier: {reference['purifier_peak_rss_mib']:.0f} MiB)",
              file=sys.stderr)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
