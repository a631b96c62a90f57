"""End-to-end evaluation of a bundle to the field's standard: AutoAttack through purifier + classifier.

    python -m purifyd_train robust-evaluate --bundle models/mnist-robust [--n 1000] [--unseen NAME[=FILE.onnx] ...]

The attacker knows the whole deployment: every attack differentiates through (or, for Square, queries)
the bundle's purifier followed by its classifier, both loaded from the bundle's ONNX files as purifyd
loads them. AutoAttack runs with its reference parameters (APGD-CE, APGD-T over 9 target classes,
FAB-T over 9 target classes, 100 iterations each; Square with 5,000 queries), each attack on the images
the previous ones left correctly classified. Beside it, the checks against gradient masking: accuracy
falls to zero as eps grows; Square alone is not stronger than the white-box attacks; attacks computed on
the undefended classifier and then purified (transfer) are weaker than end-to-end ones. With --unseen, the
same AutoAttack runs through the purifier followed by each unseen classifier: an ONNX file, or by name alone
one of the dataset's unseen classifiers trained by `python -m purifyd_train classifiers`
(training/runs/<dataset>/classifiers/<name>.pt).

Test images come from the test split's seeded permutation and are never used for any training choice.
Results go to <bundle>/robustness.json (or --out) as a `RobustEvaluation`. Each finished batch of each attack
is kept in a ledger under training/runs/robust-evaluate (ledger.py): a stopped evaluation, run again, resumes
where it stopped, and adding an --unseen classifier later attacks only that one.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torchattacks
from torch import nn

from ..runs import REPO_ROOT, log, run_dir, setup, write_json
from ..data.datasets import DEFAULT_DATA_ROOT, spec, test_subset
from ..models.networks import classifier_zoo
from ..models.ops import channels_last, freeze
from ..training.trained import load_classifier, trained_weights_path
from .ledger import AttackLedger, correct, file_digest, settings_digest
from .train import bundle_classifier, bundle_purifier, bundle_settings, onnx_classifier


@dataclass(frozen=True)
class AttackOutcome:
    """One attack of a cascade: the accuracy left after it (and every attack before it)."""

    name: str
    params: dict
    accuracy: float
    broken: int          # images it turned from correct to wrong
    seconds: float


@dataclass(frozen=True)
class Cascade:
    """AutoAttack on one pipeline: clean accuracy, then each attack in turn."""

    classifier: str
    clean: float
    attacks: list[AttackOutcome]

    @property
    def robust(self) -> float:
        return self.attacks[-1].accuracy if self.attacks else self.clean


@dataclass(frozen=True)
class MaskingChecks:
    """The checks against gradient masking (Carlini et al. 2019; Croce & Hein 2020)."""

    images: int                        # the first test images the sweep and the alone checks ran on
    sweep: dict[str, float]            # eps -> accuracy under APGD-CE + APGD-T at that eps
    white_box: float                   # accuracy after APGD-CE, APGD-T and FAB-T
    square_broke_after_white_box: int  # images only the black-box attack broke
    square_alone: float                # accuracy under Square alone
    apgd_ce_alone: float               # accuracy under APGD-CE alone
    transfer: float                    # accuracy on PGD-40 examples of the undefended classifier, purified
    sweep_reaches_zero: bool
    black_box_not_stronger: bool
    transfer_weaker: bool


@dataclass(frozen=True)
class RobustEvaluation:
    """What the card's adaptive-attack section reports for one bundle."""

    bundle: str
    dataset: str
    n: int
    seed: int
    eps: float
    quick: bool
    seen: Cascade
    unseen: list[Cascade]
    checks: MaskingChecks
    seconds: float                     # attack time, summed over every run of a resumed evaluation
    command: str                       # the robust-evaluate command line that wrote it
    notes: list[str] = field(default_factory=list)


class Defended(nn.Module):
    """Purifier, then classifier: the network the attacker differentiates through, in channels-last layout
    (`channels_last`: the hours of an AutoAttack are almost all convolutions)."""

    def __init__(self, purifier: nn.Module, classifier: nn.Module):
        super().__init__()
        self.purifier, self.classifier = channels_last(purifier), channels_last(classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.purifier(x))


def autoattack(model: nn.Module, eps: float, seed: int, quick: bool, n_classes: int = 10) -> list[tuple[str, torchattacks.attack.Attack]]:
    """AutoAttack's standard version with its reference parameters (quick: 5 iterations and 100 queries)."""
    steps, queries = (5, 100) if quick else (100, 5000)
    return [
        ("APGD-CE", torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, loss="ce", seed=seed)),
        ("APGD-T", torchattacks.APGDT(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, n_classes=n_classes, seed=seed)),
        ("FAB-T", torchattacks.FAB(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, multi_targeted=True,
                                   n_classes=n_classes, seed=seed)),
        ("Square", torchattacks.Square(model, norm="Linf", eps=eps, n_queries=queries, n_restarts=1, p_init=0.8, seed=seed)),
    ]


def attack_params(attack: torchattacks.attack.Attack) -> dict:
    keys = ("eps", "steps", "n_restarts", "n_queries", "loss", "multi_targeted", "n_target_classes", "p_init", "seed")
    return {k: getattr(attack, k) for k in keys if isinstance(getattr(attack, k, None), (int, float, str, bool))}


def cascade(model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor, attacks, seed: int,
            ledger: AttackLedger | None = None, key: str | None = None) -> Cascade:
    """Runs the attacks in order, each on the images still classified correctly; `key` names the pipeline's
    entries in the ledger (default: `name`)."""
    ledger = ledger or AttackLedger()
    alive = correct(model, x, y)
    clean = float(alive.float().mean())
    outcomes = []
    for attack_name, attack in attacks:
        index = alive.nonzero().squeeze(1)
        still, seconds = ledger.still_correct(f"{key or name} {attack_name}", model, attack, x[index], y[index], seed)
        still = still.to(alive.device)
        alive[index[~still]] = False
        outcomes.append(AttackOutcome(attack_name, attack_params(attack), float(alive.float().mean()),
                                      int((~still).sum()), seconds))
        log(f"{name}: {attack_name} -> {outcomes[-1].accuracy:.4f} ({outcomes[-1].broken} broken, {seconds:.0f}s)")
    return Cascade(name, clean, outcomes)


def accuracy_under(ledger: AttackLedger, key: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack,
                   seed: int) -> float:
    return float(ledger.still_correct(key, model, attack, x, y, seed)[0].float().mean())


def masking_checks(model: nn.Module, undefended: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                   seen: Cascade, seed: int, quick: bool, sweep_n: int, ledger: AttackLedger) -> MaskingChecks:
    xs, ys = x[:sweep_n], y[:sweep_n]
    sweep = {}
    for factor in (0.5, 1.0, 1.5, 2.0, 3.0):
        e = min(eps * factor, 1.0)
        attacks = autoattack(model, e, seed, quick)[:2]
        sweep[f"{e:.4f}"] = cascade(model, f"sweep eps {e:.4f}", xs, ys, attacks, seed, ledger,
                                    key=f"sweep eps {e:.4f} on {len(xs)}").robust
    white_box = seen.attacks[2].accuracy
    square_broke = seen.attacks[3].broken
    square = autoattack(model, eps, seed, quick)[3][1]
    square_alone = accuracy_under(ledger, f"Square alone on {len(xs)}", model, xs, ys, square, seed)
    apgd = autoattack(model, eps, seed, quick)[0][1]
    apgd_alone = accuracy_under(ledger, f"APGD-CE alone on {len(xs)}", model, xs, ys, apgd, seed)
    transfer_attack = torchattacks.PGD(undefended, eps=eps, alpha=2.5 * eps / (10 if quick else 40),
                                       steps=10 if quick else 40, random_start=True)
    transfer = accuracy_under(ledger, "transfer", model, x, y, transfer_attack, seed)
    return MaskingChecks(len(xs), sweep, white_box, square_broke, square_alone, apgd_alone, transfer,
                         sweep_reaches_zero=sweep[max(sweep, key=float)] <= 0.02,
                         black_box_not_stronger=square_alone >= apgd_alone - 0.01 and square_broke <= max(1, len(x) // 100),
                         transfer_weaker=transfer >= seen.robust)


def unseen_classifier(dataset: str, name: str, path: Path | None, sample: torch.Tensor) -> nn.Module:
    """An unseen classifier from its ONNX file, or the dataset's trained one of that name."""
    if path is None:
        return load_classifier(dataset, known_unseen(dataset, name))[1].to(torch.get_default_device())
    return onnx_classifier(path, sample)


def known_unseen(dataset: str, name: str) -> str:
    ds = spec(dataset)
    names = list(classifier_zoo(ds.name, ds.channels, ds.size))[1:]
    if name not in names:
        raise SystemExit(f"--unseen {name}: not one of {dataset}'s unseen classifiers ({', '.join(names)}); "
                         "give another classifier as NAME=FILE.onnx")
    return name


def ledger_for(bundle: Path, settings: dict, n: int, seed: int, eps: float, quick: bool) -> AttackLedger:
    """The ledger of this bundle's evaluation on these images: one file per bundle content and evaluation settings,
    kept after the evaluation, so that running it again with another unseen classifier attacks only that one."""
    identity = dict(purifier=file_digest(bundle / settings["purifier"]["file"]),
                    classifier=file_digest(bundle / settings["classifier"]["file"]),
                    n=n, seed=seed, eps=eps, quick=quick)
    return AttackLedger(run_dir("robust-evaluate") / f"{bundle.name}-{settings_digest(identity)}.pt")


def unseen_key(dataset: str, name: str, path: Path | None) -> str:
    """An unseen classifier's entries in the ledger, named by its weights' content."""
    return f"{name} {file_digest(path or trained_weights_path(dataset, name))[:12]}"


def evaluate(bundle: Path, n: int, seed: int, quick: bool, unseen: dict[str, Path | None], data_root: Path,
             sweep_n: int, command: str) -> RobustEvaluation:
    settings = bundle_settings(bundle)
    dataset = spec(settings.get("training", {}).get("dataset", settings["name"].removesuffix("-robust")))
    x, y = test_subset(dataset, n, seed, data_root)
    eps = float(settings.get("training", {}).get("epsilon_linf", dataset.eps))
    purifier = freeze(bundle_purifier(bundle))
    classifier = bundle_classifier(bundle, x[:64])
    model = Defended(purifier, classifier).eval()
    # Loaded before any attack runs, so that a missing classifier fails in seconds, not after the seen cascade.
    others = {name: Defended(purifier, unseen_classifier(dataset.name, name, path, x[:64])).eval()
              for name, path in unseen.items()}
    ledger = ledger_for(bundle, settings, n, seed, eps, quick)
    seen = cascade(model, "seen", x, y, autoattack(model, eps, seed, quick), seed, ledger)
    checks = masking_checks(model, classifier, x, y, eps, seen, seed, quick, min(sweep_n, n), ledger)
    unseen_cascades = [cascade(other, name, x, y, autoattack(other, eps, seed, quick), seed, ledger,
                               key=unseen_key(dataset.name, name, unseen[name]))
                       for name, other in others.items()]
    # Attack time summed over every run that contributed the batches used, not just this one's wall time.
    seconds = ledger.seconds_used
    return RobustEvaluation(str(bundle.relative_to(REPO_ROOT) if bundle.is_relative_to(REPO_ROOT) else bundle),
                            dataset.name, n, seed, eps, quick, seen, unseen_cascades, checks, seconds,
                            command)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--n", type=int, default=1000, help="test images (default 1000)")
    p.add_argument("--sweep-n", type=int, default=200, help="test images for the eps sweep and the alone checks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help="torch device for the networks and attacks (e.g. cuda)")
    p.add_argument("--quick", action="store_true", help="5 iterations and 100 queries: a smoke test, not a figure")
    p.add_argument("--unseen", action="append", default=[], metavar="NAME[=FILE.onnx]",
                   help="an unseen classifier to attack end to end through the purifier: an ONNX file, or the "
                        "dataset's trained classifier NAME (repeatable)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--out", type=Path, help="where to write the JSON (default <bundle>/robustness.json)")
    args = p.parse_args(argv)
    setup(args.seed, args.threads, args.device)
    unseen: dict[str, Path | None] = {}
    for item in args.unseen:
        name, sep, path = item.partition("=")
        if not name or (sep and not path):
            raise SystemExit(f"--unseen takes NAME or NAME=FILE.onnx, not {item!r}")
        unseen[name] = Path(path) if sep else None
    bundle = args.bundle.resolve()
    command = " ".join(["python -m purifyd_train robust-evaluate", *(argv if argv is not None else sys.argv[1:])])
    result = evaluate(bundle, args.n, args.seed, args.quick, unseen, args.data, args.sweep_n, command)
    out = args.out or bundle / "robustness.json"
    write_json(out, asdict(result))
    log(f"seen classifier: clean {result.seen.clean:.4f}, AutoAttack {result.seen.robust:.4f}; wrote {out}")
