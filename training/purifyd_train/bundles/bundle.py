"""Makes a purifyd bundle from a folder of labelled images and the user's ONNX classifier.

    python -m purifyd_train bundle --data DIR --classifier FILE.onnx --out DIR [--eps E] [--quick]
        [--extra-classifier F.onnx ...] [--mean m1,m2,m3 --std s1,s2,s3] [--work DIR]

DIR holds one sub-folder per class (sorted names are the labels' order) of PNG or JPEG images of any
size, brought to the classifier's input size with Pillow's bilinear resize. The classifier is never
retrained: it is converted to a differentiable torch module (onnx2torch) and the project's recipe
trains a purifier against it (pairs from FGSM, PGD and C&W on the training images, the GAN), which is
exported and checked against ONNX Runtime, evaluated on the test images (oblivious attacks, the
classic baselines, adaptive attacks, clean cost, transfer to --extra-classifier) and described in a
card. Every input is checked before any training starts; the bundle is built beside OUT and renamed
into place at the end, so OUT holds a whole bundle or nothing new. The work folder keeps each
stage's results and the GAN's per-epoch checkpoint: rerunning the same command resumes.

Exit statuses (sysexits): 64 usage, 65 bad data or classifier, 66 a missing input.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..attacks.protocol import AttackConfig, evaluation_attacks, folder_cw_params, run_attack, training_attacks
from ..cards.bundle_card import render_card
from ..evaluation.evaluate import generator_record, run_evaluation, sweep_attacks
from ..evaluation.inputs import EvaluationInputs
from ..models.networks import FeatureNet, PatchDiscriminator, Purifier, UNetGenerator
from ..models.ops import predict
from ..runs import RUNS_ROOT, log, progress_options, write_json
from ..training.classifiers import train as train_network
from ..training.gan import LEARNING_RATE, SELECTION, GanParts, predict_purified, selection_score, train_epoch
from ..training.pairs import CORRELATION_SIGMAS, NOISE_BUDGETS, make_pair_set, pair_images
from .errors import BundleError, no_input, usage_error
from .export import TOLERANCE, check_purifier, sha256
from .folder import image_channels, load_images, scan_folder, split_listing
from .manifest import BundleManifest
from .onnx_classifier import load_classifier
from .records import BundleOptions, ClassifierSpec, FolderListing, Sizes, Split

# The recipe of the shipped Fashion-MNIST and MNIST bundles (training/recipes/): the paper's losses plus the
# seen classifier's and the feature network's guidance, and a generator that outputs a correction to its input.
LOSS_WEIGHTS = {"gan": 1.0, "l1": 100.0, "perceptual": 1.0, "guidance": 10.0, "feature_guidance": 10.0,
                "source_guidance": 0.0}
GENERATOR = {"ngf": 16, "cap": 64, "res_blocks": [1, 2, 2, 2], "residual_output": True}
# Each pair of a round takes its own training image; per --per-attack images: 6 FGSM/PGD budgets, C&W on twice
# as many, random-sign noise, correlated noise, and clean pairs on four times as many.
IMAGES_PER_ATTACK_UNIT = 6 + 2 + 1 + 1 + 4
SEEN = "classifier"
MIN_CLASSES = 4
PROBE = 256  # validation images the classifiers are probed and checked on


FULL = Sizes(None, 1500, 8, 64, 2, None, 500, 1000, 200, 500, 1000)
QUICK = Sizes(None, 6, 1, 16, 1, 2000, 16, 40, 16, 16, 24)


@dataclass
class Prepared:
    """The checked inputs: the listing, its split, the images, and the converted classifiers."""

    listing: FolderListing
    split: Split
    channels: int
    images: torch.Tensor          # uint8 N,C,H,W at the classifier's input size
    labels: torch.Tensor
    spec: ClassifierSpec
    seen: torch.nn.Module
    extras: dict[str, tuple[ClassifierSpec, torch.nn.Module]]
    eps: float
    per_attack: int
    fingerprint: dict = field(default_factory=dict)

    def part(self, name: str, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """A split part's images (float in [0, 1]) and labels, in a seeded order; the first n of them."""
        index = getattr(self.split, name)
        index = index[np.random.default_rng(seed).permutation(len(index))][:n]
        return self.images[index].float() / 255, self.labels[index]


def parse_floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise usage_error(f"{option} takes comma-separated numbers, e.g. 0.5 or 0.49,0.48,0.45; not {text!r}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own exit status is 2; sysexits says 64
        self.print_usage(sys.stderr)
        raise usage_error(message)


def parse_args(argv: list[str]) -> BundleOptions:
    p = _Parser(prog="python -m purifyd_train bundle", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="class folders of PNG/JPEG images")
    p.add_argument("--classifier", type=Path, required=True, help="NCHW float32 ONNX classifier")
    p.add_argument("--out", type=Path, required=True, help="the bundle folder to write (must not exist, or --force)")
    p.add_argument("--eps", type=float, default=None,
                   help="l-inf budget on [0, 1] pixels (default 0.1 for grey images, 8/255 for colour)")
    p.add_argument("--quick", action="store_true", help="small sizes: a bundle in a few minutes, for a check")
    p.add_argument("--extra-classifier", type=Path, action="append", default=[],
                   help="another ONNX classifier of the same input, for the transfer rows (repeatable; takes the "
                        "same --mean/--std)")
    p.add_argument("--mean", help="the classifier takes (x - mean) / std: per-channel mean, comma-separated")
    p.add_argument("--std", help="per-channel std, comma-separated (with --mean)")
    p.add_argument("--work", type=Path, default=None,
                   help="checkpoints and stage results (default training/runs/bundles/<name>); reruns resume from it")
    p.add_argument("--name", default=None, help="the bundle's name (default: OUT's folder name)")
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--description", default=None)
    p.add_argument("--seed", type=int, default=0, help="seeds the split, the pairs and the training")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of each class for validation (default 0.1)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="share of each class for the test (default 0.1)")
    p.add_argument("--epochs", type=int, default=None, help=f"GAN epochs (default {FULL.epochs}, quick {QUICK.epochs})")
    p.add_argument("--minutes", type=float, default=None, help="stop the GAN after the epoch that crosses this budget")
    p.add_argument("--per-attack", type=int, default=None,
                   help=f"training images per attack configuration (default: as many as the training images allow, "
                        f"up to {FULL.per_attack_cap}; each takes {IMAGES_PER_ATTACK_UNIT} images in all)")
    p.add_argument("--n", type=int, default=None, help=f"test images evaluated (default {FULL.n}, quick {QUICK.n})")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--notes", type=Path, default=None,
                   help="a Markdown file the card ends with under Notes (e.g. what was tried for a missed target)")
    args = p.parse_args(argv)
    if (args.mean is None) != (args.std is None):
        raise usage_error("--mean and --std go together")
    if args.eps is not None and not 0 < args.eps < 1:
        raise usage_error(f"--eps {args.eps} must be in (0, 1): a budget on [0, 1] pixels")
    for option in ("epochs", "per_attack", "n"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise usage_error(f"--{option.replace('_', '-')} must be at least 1")
    sizes = QUICK if args.quick else FULL
    sizes = Sizes(**{**asdict(sizes), **{k: v for k, v in (("epochs", args.epochs), ("per_attack", args.per_attack),
                                                             ("n", args.n)) if v is not None}})
    out = args.out.resolve()
    name = args.name or out.name
    return BundleOptions(args.data, args.classifier, out, (args.work or RUNS_ROOT / "bundles" / name).resolve(),
                         args.eps, args.quick, tuple(args.extra_classifier), parse_floats(args.mean, "--mean"),
                         parse_floats(args.std, "--std"), name, args.version, args.description, args.seed,
                         args.val_fraction, args.test_fraction, sizes, args.threads, args.force, args.minutes,
                         args.notes, "python -m purifyd_train bundle " + shlex.join(argv))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare(options: BundleOptions) -> Prepared:
    """Every check that can fail, before any training: the folder, the classifier and the split, the extra
    classifiers, OUT, and whether the training images hold the pairs asked for."""
    if options.notes and not options.notes.is_file():
        raise no_input(f"no notes file at {options.notes}")
    if options.out.exists() and not options.force:
        raise usage_error(f"{options.out} exists: choose another --out, or --force to replace it")
    if not options.out.parent.is_dir():
        raise usage_error(f"{options.out.parent} (OUT's parent folder) does not exist")
    listing = scan_folder(options.data)
    if len(listing.classes) < MIN_CLASSES:
        raise BundleError(f"{options.data}: {len(listing.classes)} classes; the evaluation's AutoAttack needs at least "
                          f"{MIN_CLASSES} (its targeted DLR loss compares the four highest scores)")
    split = split_listing(listing, options.seed, options.val_fraction, options.test_fraction)
    from .onnx_classifier import inspect_classifier
    spec, _ = inspect_classifier(options.classifier, options.mean and list(options.mean), options.std and list(options.std))
    if spec.classes != len(listing.classes):
        raise BundleError(f"{options.classifier}: the classifier outputs {spec.classes} scores per image, but "
                          f"{options.data} has {len(listing.classes)} classes (one per sub-folder, in sorted order)")
    channels = image_channels(listing)
    if channels != spec.channels:
        raise BundleError(f"{options.data}: the images have {channels} channel{'s' if channels > 1 else ''}, the "
                          f"classifier takes {spec.channels}")
    images = load_images(listing, channels, spec.size, progress=True)
    labels = torch.tensor(listing.labels, dtype=torch.long)
    probe = images[split.val[:PROBE]].float() / 255
    spec, seen = load_classifier(options.classifier, probe, options.mean and list(options.mean),
                                 options.std and list(options.std), classes=len(listing.classes))
    extras = {}
    for path in options.extra_classifiers:
        name = path.stem if path.stem not in (SEEN, *extras) else f"{path.stem}-{len(extras) + 1}"
        extra_spec, module = load_classifier(path, probe, options.mean and list(options.mean),
                                             options.std and list(options.std), classes=len(listing.classes))
        if extra_spec.size != spec.size:
            raise BundleError(f"{path}: takes {list(extra_spec.size)} images, the classifier {list(spec.size)}")
        extras[name] = (extra_spec, module)
    eps = options.eps or (0.1 if channels == 1 else 8 / 255)
    # The GAN validates on validation images, so every training image can go into a pair.
    sizes = options.sizes
    per_attack = sizes.per_attack or min(sizes.per_attack_cap, len(split.train) // IMAGES_PER_ATTACK_UNIT)
    if per_attack < 1 or per_attack * IMAGES_PER_ATTACK_UNIT > len(split.train):
        raise BundleError(f"{options.data}: {len(split.train)} training images; the pairs need "
                          f"{IMAGES_PER_ATTACK_UNIT} per --per-attack image "
                          f"({max(per_attack, 1) * IMAGES_PER_ATTACK_UNIT} for {max(per_attack, 1)}): "
                          "give more images or lower --per-attack")
    if len(split.val) < 2:
        raise BundleError(f"{options.data}: {len(split.val)} validation images; at least two are needed")
    fingerprint = {"listing_sha256": listing.fingerprint(), "classifier_sha256": file_sha256(options.classifier),
                   "mean": list(spec.mean), "std": list(spec.std), "seed": options.seed, "eps": eps,
                   "val_fraction": options.val_fraction, "test_fraction": options.test_fraction,
                   "per_attack": per_attack, "batch": sizes.batch, "feature_epochs": sizes.feature_epochs,
                   "feature_images": sizes.feature_images,
                   "gan_val_n": sizes.gan_val_n, "loss_weights": LOSS_WEIGHTS, "generator": GENERATOR}
    return Prepared(listing, split, channels, images, labels, spec, seen, extras, eps, per_attack, fingerprint)


def check_work(options: BundleOptions, prepared: Prepared) -> None:
    """A work folder belongs to one set of inputs and options: resuming it with others would mix runs."""
    options.work.mkdir(parents=True, exist_ok=True)
    record = options.work / "inputs.json"
    if record.exists():
        before = json.loads(record.read_text())
        changed = sorted(k for k in set(before) | set(prepared.fingerprint) if before.get(k) != prepared.fingerprint.get(k))
        if changed:
            raise usage_error(f"{options.work} holds a run made with other {', '.join(changed)}: give another --work, "
                              "or delete it to start afresh")
    else:
        write_json(record, prepared.fingerprint)


def train_features(options: BundleOptions, prepared: Prepared) -> tuple[FeatureNet, dict]:
    """The perceptual loss's feature network, trained here on the training images (a stand-in for ImageNet VGG19,
    as in the shipped bundles); the user's classifier is never trained."""
    path = options.work / "features.pt"
    net = FeatureNet(prepared.channels, prepared.spec.size[0], classes=len(prepared.listing.classes))
    if path.exists():
        state = torch.load(path)
        net.load_state_dict(state["weights"])
        log(f"feature network: loaded from {path}")
        return net.eval(), state["record"]
    x, y = prepared.part("train", options.sizes.feature_images, seed=options.seed)
    torch.manual_seed(options.seed)
    started = time.time()
    log(f"feature network: training {options.sizes.feature_epochs} epochs on {len(x)} training images")
    train_network(net, x, y, options.sizes.feature_epochs, 128, 0.05, flips=False)
    xv, yv = prepared.part("val", seed=options.seed)
    record = {"epochs": options.sizes.feature_epochs, "train_images": len(x),
              "val_accuracy": (predict(net, xv) == yv).float().mean().item(), "minutes": (time.time() - started) / 60}
    log(f"feature network: validation accuracy {100 * record['val_accuracy']:.2f}%")
    torch.save({"weights": net.state_dict(), "record": record}, path)
    return net.eval(), record


def make_pairs(options: BundleOptions, prepared: Prepared) -> tuple[dict, dict]:
    """(adversarial, clean) pairs from FGSM + PGD + C&W against the classifier, random-sign noise and clean
    images, all on training images."""
    path, record_path = options.work / "pairs.pt", options.work / "pairs.json"
    if path.exists() and record_path.exists():
        log(f"pairs: loaded from {path}")
        return torch.load(path), json.loads(record_path.read_text())
    n = prepared.per_attack
    x, y = prepared.part("train", seed=options.seed + 1)
    configs = training_attacks(options.name, prepared.eps, cw=folder_cw_params(prepared.channels))
    jobs = [(config, SEEN, prepared.seen, n * (2 if config.name == "CW" else 1)) for config in configs]
    total = pair_images(jobs, n, n, 4 * n)
    torch.manual_seed(options.seed + 1)
    with tqdm(total=total, desc="training pairs", unit="pair", **progress_options()) as bar:
        pairs, stats = make_pair_set(x, y, jobs, prepared.eps, SEEN, seed=options.seed + 1, noise=n, correlated_noise=n,
                                     clean=4 * n, progress=bar)
    budgets = [prepared.eps * f for f in NOISE_BUDGETS]
    record = {"classifier": SEEN, "seed": options.seed + 1, "images": total, "rounds": 1, "attacks": stats,
              "clean": 4 * n, "noise": {"n": n, "eps": budgets},
              "correlated_noise": {"n": n, "eps": budgets, "sigma": list(CORRELATION_SIGMAS)}}
    torch.save(pairs, path)
    write_json(record_path, record)
    return pairs, record


def train_purifier(options: BundleOptions, prepared: Prepared, pairs: dict, features: FeatureNet) -> tuple[UNetGenerator, dict]:
    """The GAN, one checkpoint per epoch (a rerun resumes); keeps the epoch with the best sum of purified PGD
    and purified clean accuracy on validation images."""
    folder = options.work / "gan"
    folder.mkdir(exist_ok=True)
    sizes, channels = options.sizes, prepared.channels
    torch.manual_seed(options.seed + 2)
    g = UNetGenerator(channels, GENERATOR["ngf"], GENERATOR["cap"], tuple(GENERATOR["res_blocks"]),
                      GENERATOR["residual_output"])
    d = PatchDiscriminator(channels)
    opt_g = torch.optim.Adam(g.parameters(), lr=LEARNING_RATE, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=LEARNING_RATE, betas=(0.5, 0.999))
    checkpoint, best_path = folder / "checkpoint.pt", folder / "generator.pt"
    epoch, history = 0, []
    if checkpoint.exists():
        state = torch.load(checkpoint)
        g.load_state_dict(state["generator"]); d.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"]); opt_d.load_state_dict(state["opt_d"])
        epoch, history = state["epoch"], state["history"]
        torch.set_rng_state(state["rng"])
        log(f"GAN: resumed after epoch {epoch} from {checkpoint}")
    xv, yv = prepared.part("val", sizes.gan_val_n, seed=options.seed + 3)
    pgd = AttackConfig("PGD", dict(eps=prepared.eps, alpha=prepared.eps / 4, steps=10, random_start=True))
    xv_adv = run_attack(pgd.build(prepared.seen, 99), xv, yv)
    adv, clean = pairs["adv"], pairs["clean"]
    parts = GanParts(g, d, opt_g, opt_d, features, prepared.seen, {}, LOSS_WEIGHTS)
    batches = -(-len(adv) // sizes.batch)
    started = time.time()
    with tqdm(total=sizes.epochs * batches, initial=min(epoch, sizes.epochs) * batches, desc="GAN", unit="batch",
              **progress_options()) as bar:
        while epoch < sizes.epochs:
            sums = train_epoch(parts, adv, clean, batch=sizes.batch, progress=bar)
            epoch += 1
            purifier = Purifier(g).eval()
            record = {"epoch": epoch, "run": "gan", **{k: v / len(adv) for k, v in sums.items()},
                      "val_images": "validation split", "val_n": len(xv),
                      "val_pgd_purified_acc": (predict(prepared.seen, predict_purified(purifier, xv_adv)) == yv).float().mean().item(),
                      "val_clean_purified_acc": (predict(prepared.seen, predict_purified(purifier, xv)) == yv).float().mean().item(),
                      "lr": LEARNING_RATE, "minutes": (time.time() - started) / 60}
            history.append(record)
            bar.write(f"GAN epoch {epoch}: L1 {record['l1']:.4f}, validation purified PGD "
                      f"{100 * record['val_pgd_purified_acc']:.1f}%, clean {100 * record['val_clean_purified_acc']:.1f}%")
            if record is max(history, key=selection_score):
                torch.save({"generator": g.state_dict(), "config": GENERATOR, "channels": channels, "epoch": epoch,
                            "selection": SELECTION, "history": history, "pairs": len(adv), "loss_weights": LOSS_WEIGHTS,
                            "schedule": {}}, best_path)
            torch.save({"generator": g.state_dict(), "discriminator": d.state_dict(), "opt_g": opt_g.state_dict(),
                        "opt_d": opt_d.state_dict(), "epoch": epoch, "history": history, "rng": torch.get_rng_state()},
                       checkpoint)
            write_json(folder / "history.json", history)
            if options.minutes and (time.time() - started) / 60 >= options.minutes:
                bar.write("GAN: time budget reached")
                break
    state = torch.load(best_path)
    state["history"] = history
    best = UNetGenerator(channels, GENERATOR["ngf"], GENERATOR["cap"], tuple(GENERATOR["res_blocks"]),
                         GENERATOR["residual_output"])
    best.load_state_dict(state["generator"])
    best.eval()
    for p in best.parameters():
        p.requires_grad_(False)
    return best, state


def write_bundle(options: BundleOptions, prepared: Prepared, generator: UNetGenerator, state: dict, pairs_record: dict,
                 features_record: dict, staging: Path) -> None:
    """The bundle's files in `staging`: the ONNX purifier (checked against ONNX Runtime), the user's classifier
    byte for byte, bundle.toml, the evaluation's results.json and figures, split.json and card.md."""
    spec, size = prepared.spec, prepared.spec.size
    purifier_onnx, error = check_purifier(generator, prepared.channels, size)
    log(f"export: ONNX Runtime vs PyTorch max |error| {error:.2e}")
    if error > TOLERANCE:
        raise SystemExit(f"ONNX Runtime disagrees with PyTorch beyond {TOLERANCE}: {error}")
    (staging / "purifier.onnx").write_bytes(purifier_onnx)
    shutil.copyfile(options.classifier, staging / "classifier.onnx")
    normalised = spec.mean != (0.0,) * spec.channels or spec.std != (1.0,) * spec.channels
    manifest = BundleManifest(
        name=options.name, version=options.version,
        description=options.description or f"purifier for {options.classifier.name} on {options.data.name}",
        channels=prepared.channels, trained_size=size, min_size=size, max_size=size, size_multiple=generator.multiple,
        purifier_sha256=sha256(purifier_onnx), classifier_sha256=file_sha256(options.classifier),
        architecture=spec.architecture, input_size=size, output=spec.output, labels=prepared.listing.classes,
        attacks=tuple(sorted({a.name for a in training_attacks(options.name, prepared.eps)})),
        epsilon_linf=prepared.eps, mean=spec.mean if normalised else None, std=spec.std if normalised else None,
        resize="bilinear", writer="`python -m purifyd_train bundle` (training/purifyd_train/bundles/bundle.py)")
    (staging / "bundle.toml").write_text(manifest.to_toml())
    sizes = options.sizes
    x, y = prepared.part("test", sizes.n, seed=options.seed + 4)
    classifiers = {SEEN: prepared.seen, **{name: module for name, (_, module) in prepared.extras.items()}}
    cw = folder_cw_params(prepared.channels)
    inputs = EvaluationInputs(
        options.name, x, y, Purifier(generator).eval(), generator_record(generator, state), classifiers,
        prepared.part("val", sizes.tuning_n, seed=options.seed + 5), prepared.eps,
        evaluation_attacks(options.name, prepared.eps, quick=options.quick, cw=cw),
        lambda eps: sweep_attacks(options.name, eps, options.quick, cw), staging / "figures", options.seed,
        options.quick, min(sizes.adaptive_n, len(x)), min(sizes.sweep_n, len(x)),
        n_classes=len(prepared.listing.classes), progress=True)
    results = run_evaluation(inputs)
    split = prepared.split.record(prepared.listing)
    results.update({
        "command": options.command, "bundle": asdict(manifest), "split": split,
        "classifier": spec.record(), "extra_classifiers": {name: s.record() for name, (s, _) in prepared.extras.items()},
        "sizes": {**asdict(sizes), "per_attack": prepared.per_attack, "tuning_n": len(inputs.tuning[0]),
                  "adaptive_n": inputs.adaptive_n, "sweep_n": inputs.sweep_n, "test_seed": options.seed + 4,
                  "probe": len(prepared.split.val[:PROBE])},
        "onnx_max_abs_error": error,
        "training_records": {"pairs": pairs_record, "history": state["history"], "features": features_record}})
    write_json(staging / "results.json", results)
    test_files = [str(prepared.listing.files[i].relative_to(prepared.listing.root)) for i in prepared.split.test]
    write_json(staging / "split.json", {**split, "test_files": test_files})
    notes = options.notes.read_text() if options.notes else None
    (staging / "card.md").write_text(render_card(results, notes))


def build(options: BundleOptions) -> None:
    if options.threads:
        torch.set_num_threads(options.threads)
    started = time.time()
    prepared = prepare(options)
    log(f"{options.data}: {len(prepared.listing.files)} images, {len(prepared.listing.classes)} classes, split "
        f"{len(prepared.split.train)}/{len(prepared.split.val)}/{len(prepared.split.test)} (train/validation/test); "
        f"classifier {prepared.spec.channels}×{prepared.spec.size[0]}×{prepared.spec.size[1]} → {prepared.spec.classes} "
        f"{prepared.spec.output}; ε {prepared.eps:.4g}; work folder {options.work}")
    check_work(options, prepared)
    torch.manual_seed(options.seed)
    features, features_record = train_features(options, prepared)
    pairs, pairs_record = make_pairs(options, prepared)
    generator, state = train_purifier(options, prepared, pairs, features)
    # Built beside OUT and renamed into place: OUT never holds half a bundle.
    staging = options.out.parent / f".{options.out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        write_bundle(options, prepared, generator, state, pairs_record, features_record, staging)
        if options.out.exists():
            old = options.out.parent / f".{options.out.name}.old-{os.getpid()}"
            options.out.rename(old)
            staging.rename(options.out)
            shutil.rmtree(old)
        else:
            staging.rename(options.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"wrote {options.out} in {(time.time() - started) / 60:.1f} min")


def main(argv: list[str] | None = None) -> None:
    try:
        options = parse_args(list(sys.argv[1:] if argv is None else argv))
        build(options)
    except BundleError as error:
        print(f"purifyd_train bundle: {error}", file=sys.stderr)
        sys.exit(error.status)


if __name__ == "__main__":
    main()
