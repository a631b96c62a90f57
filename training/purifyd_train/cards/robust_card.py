"""The card of a robust bundle variant (models/<dataset>-robust/card.md), rendered from templates/robust_card.md with
its bundle.toml, recipe.json and robustness.json and its source bundle's evaluations; and the table beside the
published defences and the AutoAttack cascades, which the source bundle's own card shows too.

    python -m purifyd_train robust-card --bundle models/mnist-robust

robustness.json is read as `robust-evaluate` writes it (robust/evaluate.py's RobustEvaluation as JSON).
"""
from __future__ import annotations

import argparse
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..data.datasets import DATASETS
from ..intervals import wilson
from ..runs import REPO_ROOT
from .phrases import pct, points, verdict
from .template import fill, phrase

EVALUATION_FILE = "robustness.json"
RECIPE_FILE = "recipe.json"
ATTEMPTS_FILE = "attempts.md"

TARGET_AUTOATTACK = {"mnist": 0.90, "fashion-mnist": 0.75, "cifar10": 0.47}  # seen classifier, end to end
TARGET_CLEAN_LOSS_PP = 5.0  # clean accuracy below the undefended classifier's


@dataclass(frozen=True)
class Anchor:
    """A published defence's accuracy under AutoAttack-strength ℓ∞ attacks at the dataset's ε."""

    defence: str
    source: str
    threat_model: str  # a [robust_card] phrase
    autoattack: str    # as published, in percent


ANCHORS: dict[str, tuple[Anchor, ...]] = {
    "mnist": (
        Anchor("adversarial training", "Madry et al. 2018", "adversarial_training", "88.4"),
        Anchor("best adversarially trained classifier", "RobustBench leaderboard", "adversarial_training", "94.0"),
    ),
    "cifar10": (
        Anchor("adversarial training", "Madry et al. 2018", "adversarial_training", "44.3"),
        Anchor("best adversarially trained classifier", "RobustBench leaderboard", "adversarial_training",
               "73.7 (75.3 with MeanSparse)"),
        Anchor("best purification, one attempt", "DiffPure and successors after adaptive re-evaluation", "purification",
               "42–47"),
    ),
}


@dataclass(frozen=True)
class BundleFigures:
    """One purifyd bundle's row beside the published defences: accuracy records (acc, n, ci95) for clean images,
    for the oblivious attacker (PGD-40 on the classifier alone, then purified) and for AutoAttack end to end
    through its purifier and seen classifier; None where not evaluated."""

    name: str
    threat_model: str  # "oblivious" or "adaptive"
    clean: dict | None
    oblivious: dict | None
    autoattack: dict | None
    quick: bool


def read_json(path: Path) -> dict | None:
    """The JSON object in path, or None when there is no such file."""
    return json.loads(path.read_text()) if path.exists() else None


def manifest(bundle: Path) -> dict:
    """The bundle's bundle.toml."""
    with open(bundle / "bundle.toml", "rb") as f:
        return tomllib.load(f)


def accuracy_record(accuracy: float, n: int) -> dict:
    """An accuracy on n images with its 95% Wilson interval, as the evaluation's records hold them."""
    return {"acc": accuracy, "n": n, "ci95": list(wilson(round(accuracy * n), n))}


def autoattack_accuracy(cascade: dict) -> float:
    """The accuracy left after the cascade's last attack (its clean accuracy when it ran none)."""
    return cascade["attacks"][-1]["accuracy"] if cascade["attacks"] else cascade["clean"]


def bundle_figures(bundle: Path, evaluation: dict | None) -> BundleFigures:
    """A bundle's clean, oblivious-attacker and AutoAttack accuracy from its robustness.json (evaluation, as the
    caller read it); without one, its clean purified accuracy from its results.json (the oblivious evaluation)
    and neither attacker evaluated."""
    settings = manifest(bundle)
    threat_model = settings.get("training", {}).get("threat_model", "oblivious")
    if evaluation:
        seen, n = evaluation["seen"], evaluation["n"]
        return BundleFigures(settings["name"], threat_model, accuracy_record(seen["clean"], n),
                             accuracy_record(evaluation["checks"]["transfer"], n),
                             accuracy_record(autoattack_accuracy(seen), n), evaluation["quick"])
    results = read_json(bundle / "results.json")
    clean = results["clean"][results["seen"]]["purifier"] if results else None
    return BundleFigures(settings["name"], threat_model, clean, None, None, False)


def comparison_rows(dataset: str, bundles: list[BundleFigures]) -> list[str]:
    """The table beside the published defences: the dataset's anchors (or a row saying it has none), then each
    purifyd bundle."""
    rows = [f"| {a.defence} ({a.source}) | {phrase('robust_card', a.threat_model)} | – | – | {a.autoattack} | – |"
            for a in ANCHORS.get(dataset, ())]
    if not rows:
        rows.append(f"| {phrase('robust_card', 'no_anchor')} | – | – | – | – | – |")
    not_evaluated = phrase("robust_card", "not_evaluated")
    for b in bundles:
        figure = b.autoattack or b.clean
        rows.append(f"| {phrase('robust_card', 'purifyd', name=b.name)}{phrase('robust_card', 'quick') if b.quick else ''} | "
                    f"{phrase('robust_card', b.threat_model)} | {pct(b.clean) if b.clean else not_evaluated} | "
                    f"{pct(b.oblivious) if b.oblivious else not_evaluated} | "
                    f"{'**' + pct(b.autoattack) + '**' if b.autoattack else not_evaluated} | "
                    f"{figure['n'] if figure else '–'} |")
    return rows


def comparison_section(dataset: str, bundles: list[BundleFigures]) -> str:
    """The table that sets purifyd's bundles beside the published defences, with what its columns mean."""
    note = DATASETS[dataset].note if dataset in DATASETS else ""
    return fill("robust_card/comparison", rows="\n".join(comparison_rows(dataset, bundles)),
                dataset_note=phrase("robust_card", "dataset_note", note=note) if note else "")


def cascade_section(cascade: dict, n: int, heading: str) -> str:
    """One classifier's AutoAttack cascade: the accuracy left after each attack and the images it broke."""
    rows = [f"| {a['name']} | `{json.dumps(a['params'])}` | {pct(accuracy_record(a['accuracy'], n))} | {a['broken']} |"
            for a in cascade["attacks"]]
    return fill("robust_card/cascade", heading=heading, clean=pct(accuracy_record(cascade["clean"], n)),
                rows="\n".join(rows))


def cascade_sections(evaluation: dict, architecture: str) -> str:
    """The cascades of the seen classifier and of each unseen one."""
    sections = [cascade_section(evaluation["seen"], evaluation["n"], phrase("robust_card", "seen", architecture=architecture))]
    sections += [cascade_section(c, evaluation["n"], phrase("robust_card", "unseen", name=c["classifier"]))
                 for c in evaluation["unseen"]]
    return "\n\n".join(sections)


def quick_warning(evaluation: dict) -> str:
    """The smoke-test warning for an evaluation run with --quick, else nothing."""
    return fill("robust_card/quick") + "\n" if evaluation["quick"] else ""


def masking_section(checks: dict, end_to_end: float) -> str:
    """The ε sweep and the three checks against gradient masking, each passed or failed as robust-evaluate judged it."""
    result = lambda passed: phrase("masking", "passed" if passed else "failed")
    largest = max(checks["sweep"], key=float)
    rows = [(phrase("masking", "sweep"),
             phrase("masking", "sweep_measured", accuracy=f"{100 * checks['sweep'][largest]:.1f}", eps=f"{float(largest):.4g}"),
             result(checks["sweep_reaches_zero"])),
            (phrase("masking", "black_box"),
             phrase("masking", "black_box_measured", square=f"{100 * checks['square_alone']:.1f}",
                    apgd=f"{100 * checks['apgd_ce_alone']:.1f}", white_box=f"{100 * checks['white_box']:.1f}",
                    broke=checks["square_broke_after_white_box"]),
             result(checks["black_box_not_stronger"])),
            (phrase("masking", "transfer"),
             phrase("masking", "transfer_measured", transfer=f"{100 * checks['transfer']:.1f}",
                    end_to_end=f"{100 * end_to_end:.1f}"),
             result(checks["transfer_weaker"]))]
    passed = checks["sweep_reaches_zero"] and checks["black_box_not_stronger"] and checks["transfer_weaker"]
    return fill("robust_card/masking", images=checks["images"],
                sweep_rows="\n".join(f"| {float(eps):.4g} | {100 * accuracy:.1f} |" for eps, accuracy in checks["sweep"].items()),
                check_rows="\n".join(f"| {check} | {measured} | {outcome} |" for check, measured, outcome in rows),
                masking_note="" if passed else "\n\n" + fill("robust_card/masking_failed"))


def target_rows(evaluation: dict, source_results: dict | None) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for AutoAttack accuracy end to end and for the clean accuracy lost against the
    undefended classifier (from the source bundle's results.json, when it has one)."""
    dataset, n = evaluation["dataset"], evaluation["n"]
    seen = evaluation["seen"]
    robust = accuracy_record(autoattack_accuracy(seen), n)
    undefended = source_results["clean"][source_results["seen"]]["none"] if source_results else None
    target = TARGET_AUTOATTACK[dataset]
    lo, hi = robust["ci95"]
    rows = [(phrase("robust_targets", "autoattack", eps=f"{evaluation['eps']:.4g}", target=f"{100 * target:.0f}"),
             phrase("robust_targets", "autoattack_measured", accuracy=f"{100 * robust['acc']:.1f}", low=f"{100 * lo:.1f}",
                    high=f"{100 * hi:.1f}"),
             verdict(robust["acc"] - target, target, undefended["acc"] if undefended else None))]
    limit = phrase("targets", "clean_loss", limit=f"{TARGET_CLEAN_LOSS_PP:g}")
    if undefended is None:
        rows.append((limit, phrase("robust_targets", "clean_not_measured"), phrase("robust_card", "not_evaluated")))
    else:
        cost = 100 * (undefended["acc"] - seen["clean"])
        rows.append((limit, phrase("robust_targets", "clean_cost_measured", clean=f"{100 * undefended['acc']:.1f}",
                                   clean_n=undefended["n"], purified=f"{100 * seen['clean']:.1f}", purified_n=n,
                                   cost=points(cost)),
                     verdict((TARGET_CLEAN_LOSS_PP - cost) / 100)))
    return rows


def recipe_lines(record: dict) -> str:
    """The training recipe and the checkpoint it chose, from recipe.json."""
    recipe, validation = record["recipe"], record["validation"]
    objective = (phrase("robust_card", "trades", beta=f"{recipe['beta']:g}") if recipe["objective"] == "trades"
                 else phrase("robust_card", "pgd"))
    return fill("robust_card/recipe", objective=objective, eps=f"{recipe['eps']:.4g}",
                ramp=f"{100 * recipe['ramp_fraction']:g}", attack_steps=recipe["attack_steps"],
                step_fraction=f"{recipe['step_size_fraction']:g}", reconstruction=f"{recipe['reconstruction_weight']:g}",
                learning_rate=f"{recipe['learning_rate']:g}", iterations=f"{recipe['iterations']:,}", batch=recipe["batch"],
                seed=recipe["seed"], iteration=record["iteration"], validation_images=recipe["validation_images"],
                validation_every=recipe["validation_every"], validation_clean=f"{100 * validation['clean']:.1f}",
                validation_robust=f"{100 * validation['robust']:.1f}", onnx_error=f"{record['onnx_max_abs_error']:.2e}")


def classifier_line(bundle: Path, source: Path) -> str:
    """Whether the bundle's classifier file is byte for byte its source bundle's."""
    settings, source_settings = manifest(bundle)["classifier"], manifest(source)["classifier"]
    ours, theirs = bundle / settings["file"], source / source_settings["file"]
    if theirs.exists() and ours.read_bytes() == theirs.read_bytes():
        return phrase("robust_card", "classifier_identical", sha=settings["sha256"])
    return phrase("robust_card", "classifier_differs", sha=settings["sha256"], source_sha=source_settings["sha256"])


def repository_path(path: Path) -> str:
    """A path as the card's commands give it: relative to the repository root when inside it."""
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def render_card(bundle: Path) -> str:
    """card.md of a robust bundle variant from the files in its folder and its source bundle's evaluations."""
    settings = manifest(bundle)
    record = read_json(bundle / RECIPE_FILE)
    evaluation = read_json(bundle / EVALUATION_FILE)
    if record is None or evaluation is None:
        raise SystemExit(f"{bundle} needs {RECIPE_FILE} (robust-export) and {EVALUATION_FILE} (robust-evaluate)")
    source = REPO_ROOT / record["source_bundle"]
    source_evaluation = read_json(source / EVALUATION_FILE)
    dataset = evaluation["dataset"]
    rows = target_rows(evaluation, read_json(source / "results.json"))
    missed = not all(v == "met" for _, _, v in rows)
    tried = fill("dataset_card/attempts" if (bundle / ATTEMPTS_FILE).exists() else "robust_card/tried")
    return fill("robust_card", name=settings["name"], quick_warning=quick_warning(evaluation),
                dataset=DATASETS[dataset].note or dataset, source=record["source_bundle"],
                classifier=classifier_line(bundle, source),
                evaluate_command=evaluation["command"], n=evaluation["n"], seed=evaluation["seed"],
                source_command=(phrase("robust_card", "source_command", command=source_evaluation["command"])
                                if source_evaluation else
                                phrase("robust_card", "source_not_evaluated", source=record["source_bundle"])) + "\n",
                bundle=repository_path(bundle),
                eps=f"{evaluation['eps']:.4g}",
                comparison=comparison_section(dataset, [bundle_figures(source, source_evaluation), bundle_figures(bundle, evaluation)]),
                target_rows="\n".join(f"| {t} | {m} | {v} |" for t, m, v in rows),
                target_note="\n" + tried + "\n" if missed else "",
                cascades=cascade_sections(evaluation, settings["classifier"].get("architecture", "")),
                masking=masking_section(evaluation["checks"], autoattack_accuracy(evaluation["seen"])),
                recipe=recipe_lines(record)) + "\n"


def autoattack_section(bundle: Path) -> str:
    """For an oblivious bundle's card: its robustness.json's AutoAttack figures beside the published defences (and
    beside its robust variant, models/<name>-robust, when that has been evaluated) and its cascades; "" when the
    bundle has no robustness.json."""
    evaluation = read_json(bundle / EVALUATION_FILE)
    if evaluation is None:
        return ""
    figures = [bundle_figures(bundle, evaluation)]
    variant = bundle.parent / f"{bundle.name}-robust"
    variant_evaluation = read_json(variant / EVALUATION_FILE)
    if variant_evaluation:
        figures.append(bundle_figures(variant, variant_evaluation))
    return fill("robust_card/autoattack", quick_warning=quick_warning(evaluation),
                evaluate_command=evaluation["command"], n=evaluation["n"], seed=evaluation["seed"],
                eps=f"{evaluation['eps']:.4g}", comparison=comparison_section(evaluation["dataset"], figures),
                cascades=cascade_sections(evaluation, manifest(bundle)["classifier"].get("architecture", ""))) + "\n\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, required=True, help="a robust variant's folder, e.g. models/mnist-robust")
    args = p.parse_args(argv)
    (args.bundle / "card.md").write_text(render_card(args.bundle.resolve()))
