"""Writes a bundle's card.md from the evaluation results and the training records of the run."""
from __future__ import annotations

import json
from pathlib import Path

from .attacks import L2_ATTACKS, PAPER_ATTACKS
from .common import run_dir
from .evaluation_options import SWEEP_ATTACKS, parse_args
from .models import FAMILY_SOURCES, classifier_zoo, source_networks
from .train_gan import LEARNING_RATE, PAPER_LOSS_WEIGHTS, VALIDATION_IMAGES, recorded_loss_weights, run_folder

PAPER = ("Zhang, Yao, Sakurai, Saitoh, \"Leveraging Generalizability of Image-to-Image Translation for "
         "Enhanced Adversarial Defense\", arXiv 2504.01399")


def points(value: float, signed: bool = False) -> str:
    """Percentage points to one decimal, without the negative zero that a value just below zero rounds to."""
    return f"{round(value, 1) + 0.0:{'+' if signed else ''}.1f} pp"


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def loss_line(weights: dict) -> str:
    """The generator's loss as trained, and how it departs from the paper's."""
    weights = recorded_loss_weights(weights)
    gan = "cGAN" if weights["gan"] == 1 else f"{weights['gan']:g}·cGAN"
    text = f"Loss: {gan} + {weights['l1']:g}·L1 + {weights['perceptual']:g}·perceptual"
    if weights["guidance"]:
        text += (f" + {weights['guidance']:g}·guidance (L1 between the seen classifier's logits on purified and clean "
                 "images: the high-level guidance of Liao et al., CVPR 2018)")
    if weights["feature_guidance"]:
        text += (f" + {weights['feature_guidance']:g}·feature guidance (the same L1 for the logits of the perceptual "
                 "feature network)")
    if weights["source_guidance"]:
        text += (f" + {weights['source_guidance']:g}·source guidance (the same L1 averaged over the source networks "
                 + " and ".join(f"`{name}`" for name in FAMILY_SOURCES) + ", trained here only for the purifier)")
    if weights == PAPER_LOSS_WEIGHTS:
        return text + " (the paper's weights)."
    text += " — the paper's weights are cGAN + 100·L1 + 1·perceptual and no guidance term; see training/README.md for why."
    if not weights["gan"]:
        text += (" The discriminator still trains, but the generator's loss leaves out its adversarial term: this "
                 "purifier is the paper's U-Net trained by reconstruction and guidance, not a conditional GAN.")
    return text


def purifier_origin(weights: dict) -> str:
    """What the purifier is, for the card's first line: the paper's GAN, or its generator alone."""
    if recorded_loss_weights(weights)["gan"]:
        return f"the pix2pix-style GAN of {PAPER}"
    return f"the generator of the pix2pix-style GAN of {PAPER}, trained without the cGAN term (see Model)"


def schedule_line(schedule: dict | None) -> str:
    """The optimiser and what the shipped weights are: the last step's, or an average of the steps."""
    schedule = schedule or {}
    text = f"- Optimiser: Adam, learning rate {LEARNING_RATE:g}, β = (0.5, 0.999) for both networks"
    if schedule.get("decay_from") is not None:
        text += (f", held for the first {100 * schedule['decay_from']:g}% of the run (by epochs or by the time budget, "
                 "whichever ran out first) and then lowered linearly to zero")
    if schedule.get("weight_average"):
        text += (f"; the generator that is validated and shipped is an exponential moving average of its weights and "
                 f"BatchNorm statistics (decay {schedule['weight_average']:g} per step), not the last step's")
    if schedule.get("flip"):
        text += "; a random half of each batch's pairs mirrored left to right"
    if schedule.get("fresh_attacks"):
        text += ("; the FGSM, PGD and noise pairs remade at the start of every epoch after the first, on their clean "
                 "images dealt out among them anew (C&W and clean pairs as made)")
    return text + "."


def attack_pairs(label: str, record: dict, seen: str) -> str:
    """One attack's share of the training pairs and the accuracy it left its target classifier."""
    target = record.get("classifier", seen)
    accuracy = record.get("accuracy", record.get("seen_accuracy"))  # the key before feature-network attacks
    return f"{label}: n={record['n']}, {target} accuracy {100 * accuracy:.1f}%"


def pair_attack_parameters(pairs: dict) -> str:
    """The parameters of the attacks that made the training pairs, each kind once: its ε is in each pair's label,
    and PGD's step is given as a share of it."""
    kinds: dict[str, str] = {}
    for label, record in pairs.get("attacks", {}).items():
        params = dict(record.get("params", {}))
        eps = params.pop("eps", None)
        if eps and "alpha" in params:
            params["alpha"] = f"ε/{eps / params['alpha']:.3g}"
        kinds.setdefault(label.split("(")[0].split(" ")[0], f"`{json.dumps(params, ensure_ascii=False)}`" if params else "ε only")
    if not kinds:
        return ""
    seed = f", seed {pairs['seed']}" if "seed" in pairs else ""
    return f"- Training attacks (torchattacks{seed}): " + "; ".join(f"{kind} {params}" for kind, params in kinds.items()) + "."


def made_pairs(network: str, pairs: dict) -> bool:
    """Whether training pairs were made against this network (pairs.json's per-attack records name it)."""
    return any(v.get("classifier") == network for v in pairs.get("attacks", {}).values())


def source_role(name: str, generator: dict, pairs: dict) -> str:
    """What the purifier's training took from a source network (`features`, `fc`, `res`), for the card's list."""
    uses = []
    if name == "features":
        uses.append("perceptual features")
        if generator.get("loss_weights", {}).get("feature_guidance"):
            uses.append("feature guidance")
    elif generator.get("loss_weights", {}).get("source_guidance"):
        uses.append("source guidance")
    if made_pairs(name, pairs):
        uses.append("training attacks")
    return ", ".join(uses) + ("; never evaluated" if len(uses) > 1 else " only")


def _architecture(network) -> str:
    """A zoo network's shape in a few words: hidden layers of a fully connected one, width and blocks of a ResNet."""
    if hasattr(network, "hidden"):
        return f"hidden layers {list(network.hidden)}"
    return f"width {network.width}, residual blocks per stage {list(network.blocks)}"


def source_network_line(ds, metrics: dict, name: str, seen: str, guided: bool) -> str:
    """The card's account of a source network beside the evaluated classifier of its family; `guided` when the
    generator's loss held source guidance."""
    kind, counterpart = FAMILY_SOURCES[name]
    network = source_networks(ds.channels, ds.size)[name]
    other = classifier_zoo(ds.name, ds.channels, ds.size)[counterpart]
    role = "seen" if counterpart == seen else "unseen"
    uses = "to make training pairs (FGSM and PGD, named `on {}` below){}".format(
        name, " and for the source guidance" if guided else "")
    return (f"- {kind} source network (`{name}`): {_architecture(network)}, seed {metrics[name]['seed']}, trained here "
            f"on the same training set only {uses}, never evaluated; the {role} `{counterpart}` is a separate "
            f"network: {_architecture(other)}, seed {metrics[counterpart]['seed']}.")


def unseen_role(name: str, pairs: dict) -> str:
    """An unseen classifier's role for its section heading, naming the source network of its family, if any
    made training pairs: the purifier then met that family's perturbations, though never this network's."""
    family = [source for source, (_, counterpart) in FAMILY_SOURCES.items()
              if counterpart == name and made_pairs(source, pairs)]
    if not family:
        return "unseen: transfer of the purifier"
    return (f"unseen: transfer of the purifier; training pairs were made against `{family[0]}`, a separate network "
            "of the same family")


GUIDANCE_COLUMNS = {"guide": "guidance", "fguide": "feature guidance", "sguide": "source guidance"}
"""The guidance terms' history keys and column names; source guidance gets a column only where a run trained with it."""


def history_table(history: list[dict]) -> list[str]:
    """The GAN training history as a Markdown table, one row per epoch of each run."""
    keys = [k for k in GUIDANCE_COLUMNS if k != "sguide" or any(h.get(k) for h in history)]
    rows = ["| run | epoch | D loss | cGAN | L1 | perceptual | " + " | ".join(GUIDANCE_COLUMNS[k] for k in keys)
            + " | val PGD purified acc | val clean purified acc |", "|---" * (8 + len(keys)) + "|"]
    return rows + [f"| {h.get('run', 'gan')} | {h['epoch']} | {h['d']:.3f} | {h['gan']:.3f} | {h['l1']:.4f} | {h['perc']:.4f} | "
                   + " | ".join(f"{h[k]:.4f}" if k in h else "–" for k in keys)
                   + f" | {100 * h['val_pgd_purified_acc']:.1f} | {100 * h['val_clean_purified_acc']:.1f} |" for h in history]


def epochs_compared(history: list, ablation_history: list) -> str:
    """How many epochs each generator trained, from the runs' training records."""
    if not history or not ablation_history:
        return "epochs not recorded"
    a, b = history[-1]["epoch"], ablation_history[-1]["epoch"]
    return f"{a} epochs each" if a == b else f"{a} epochs with residual blocks, {b} without"


def trained_epochs(generator: dict, history: list) -> str:
    """How long the shipped generator's run trained."""
    return f"{history[-1]['epoch'] if history else generator['epoch']} epochs"


def selected_epoch(generator: dict) -> str:
    """Which epoch's weights ship, when validation chose one."""
    if not generator.get("selection"):
        return ""
    return f" (the weights after epoch {generator['epoch']}, {generator['selection']} on the validation images below)"


def kept_epochs(generator: dict, ablation: dict | None) -> str:
    """Which epoch each of the compared generators keeps, when validation chose them."""
    if not generator.get("selection"):
        return ""
    if not ablation:
        return "; each keeps its best epoch on validation"
    return f"; each keeps its best epoch on validation: {generator['epoch']} with residual blocks, {ablation['epoch']} without"


def noise_pairs(pairs: dict) -> str:
    """The pairs.json's random-sign noise pairs, independent and spatially correlated, as card text."""
    def budgets(entry: dict) -> str:
        return "{" + ", ".join(f"{e:.4g}" for e in entry["eps"]) + "}"
    text = f"; random-sign noise at ε ∈ {budgets(pairs['noise'])}: n={pairs['noise']['n']}" if "noise" in pairs else ""
    correlated = pairs.get("correlated_noise", {"n": 0})
    if correlated["n"]:
        low, high = correlated["sigma"]
        text += (f"; spatially correlated random-sign noise (the sign of Gaussian noise blurred with σ uniform in "
                 f"[{low:g}, {high:g}] px) at ε ∈ {budgets(correlated)}: n={correlated['n']}")
    return text


def pair_rounds(pairs: dict) -> str:
    """How many rounds the pairs made over their training images, when more than one."""
    if pairs.get("rounds", 1) == 1:
        return ""
    return (f" ({pairs['rounds']} rounds over the same {pairs['images']:,} training images, each image meeting another "
            "attack in each round; the counts are totals)")


def jpeg_source_caveat(ds) -> str:
    """Why the JPEG baseline is flattered on a dataset copy compressed at the baseline's own quality."""
    q = ds.source_jpeg_quality
    return (f"This copy of the dataset is itself JPEG-compressed at quality {q}, the JPEG baseline's quality: "
            "re-encoding an image lands near the copy's own pixels, so that baseline's figures here (C&W's and "
            "DeepFool's above all, whose perturbations are smallest) overstate what JPEG does to other images. "
            f"`python -m purifyd_train jpeg-check --dataset {ds.name}` compares other qualities, alone and after "
            "the purifier.")


def pct(record: dict) -> str:
    lo, hi = record["ci95"]
    return f"{100 * record['acc']:.1f} ({100 * lo:.1f}–{100 * hi:.1f})"


def mean_interval(per_attack: dict, defense: str) -> tuple[float, float]:
    """A 95% interval for the mean accuracy over the 7 paper attacks: the means of their Wilson bounds.

    The attacks share their test images, so their outcomes are correlated; the standard deviation of
    a mean is at most the mean of the standard deviations, so this interval is never narrower than
    one from the per-image outcomes would be (in the normal approximation; exact for perfectly correlated
    attacks).
    """
    bounds = [per_attack[a][defense]["ci95"] for a in PAPER_ATTACKS]
    return (sum(lo for lo, _ in bounds) / len(bounds), sum(hi for _, hi in bounds) / len(bounds))


def sweep_section(results: dict) -> list[str]:
    """The figure's ε sweep as a table, with its attacks and the number of images it ran on."""
    command = results["command"].split()
    sweep_n = parse_args(command[command.index("evaluate") + 1:]).sweep_n
    lines = [f"The figure's ε sweep: {' and '.join(SWEEP_ATTACKS)} with the parameters below at each ε (PGD's step "
             f"scales with ε), on the seen classifier, n = {sweep_n} (the first test images of the same permutation):",
             "", "| ε | " + " | ".join(f"{a}, {d}" for a in SWEEP_ATTACKS for d in ("none", "purifier")) + " |",
             "|---" * (1 + 2 * len(SWEEP_ATTACKS)) + "|"]
    for row in zip(*(results["sweep"][a] for a in SWEEP_ATTACKS)):
        lines.append(f"| {row[0]['eps']:.4g} | "
                     + " | ".join(f"{100 * point[d]:.1f}" for point in row for d in ("none", "purifier")) + " |")
    return lines + [""]


NEAR_ZERO = 0.05  # the most undefended accuracy an attack may leave the seen classifier (issue 3)
WEAK_BY_DESIGN = {
    "FGSM": "a single step of size ε along the gradient's sign, with no other parameter to strengthen; its "
            "iterated forms at the same budget are BIM, PGD and MI-FGSM",
    "Square": "a black-box attack limited to the queries above",
}


def weak_attacks(per_attack: dict) -> list[str]:
    """A paragraph on the attacks that leave the undefended seen classifier above NEAR_ZERO, and why."""
    weak = {a: r["none"]["acc"] for a, r in per_attack.items() if a not in L2_ATTACKS and r["none"]["acc"] > NEAR_ZERO}
    if not weak:
        return []
    return [f"Attacks that leave the undefended classifier above {100 * NEAR_ZERO:.0f}%: " + "; ".join(
        f"{a} {100 * acc:.1f}%, " + WEAK_BY_DESIGN.get(a, "a configuration to fix before trusting its figures")
        for a, acc in weak.items()) + ".", ""]


def validation_images(kind: str, n: int) -> str:
    if kind != VALIDATION_IMAGES:
        return f"{n} test images (seed 99; the runs before validation moved to held-out training images)"
    return f"{n} held-out training images (the last of the permutation the pairs were drawn from; no pair holds them)"


def validation_sets(history: list[dict]) -> str:
    """Which images each run validated on; entries without `val_images` predate held-out validation."""
    runs: dict[tuple, list[str]] = {}
    for h in history:
        runs.setdefault((h.get("val_images", "test"), h.get("val_n", 500)), []).append(h.get("run", "gan"))
    if len(runs) == 1:
        return validation_images(*next(iter(runs)))
    return "; ".join(f"{validation_images(*k)} for {', '.join(dict.fromkeys(v))}" for k, v in runs.items())


def training_records(dataset: str) -> dict:
    """The run folder's records the card cites: classifier metrics, pairs, both GANs' histories, the export check.

    The evaluation keeps them in results.json, so `--card-only` rewrites a card once the run folder is gone.
    """
    root = run_dir(dataset)
    return {"metrics": _read(root / "classifiers" / "metrics.json"), "pairs": _read(root / "pairs.json"),
            "history": _read(run_folder(dataset) / "history.json"),
            "ablation_history": _read(run_folder(dataset, ablation=True) / "history.json"),
            "export": _read(root / "export.json")}


def through_purify_paragraph(dataset: str, check: dict) -> str:
    """The card's paragraph on `evaluate --through-purify`, from its through_purify.json."""
    return (f"PGD examples (n = {check['n']}, seed {check['seed']}) saved as 8-bit PNGs and run through the `purify` CLI: "
            f"accuracy read from its reports {100 * check['accuracy_purify']:.2f}%, PyTorch running this bundle's ONNX "
            "graphs on the same pixels (the purified image rounded to 8 bits between them, as purify does) "
            f"{100 * check['accuracy_pytorch']:.2f}% ({check['difference_pp']:+.2f} pp; per-image agreement "
            f"{100 * check['prediction_agreement']:.2f}%; tolerance ±{check['tolerance_pp']} pp). Command: "
            f"`PYTHONPATH=training python -m purifyd_train evaluate --dataset {dataset} --n {check['n']} "
            "--through-purify .build/debug/purify` (or `make evaluate-purify`).")


def share(purified: float, clean: float) -> str:
    """A purified accuracy as a share of the classifier's clean accuracy ("–" for a classifier that gets nothing right)."""
    return f"{100 * purified / clean:.0f}%" if clean else "–"


TARGET_MEAN = 0.80  # issue 3: mean purified accuracy over the 7 paper attacks
TARGET_BASELINE_MARGIN = 0.10  # over the best baseline's mean
TARGET_CLEAN_LOSS_PP = 2.0  # clean accuracy lost to purification
TARGET_UNSEEN_GAP = 0.10  # an unseen classifier's purified mean below the seen one's

ATTEMPTS_FILE = "attempts.md"


def verdict(excess: float, needed: float | None = None, ceiling: float | None = None) -> str:
    """"met" for a target exceeded by `excess` ≥ 0, else by how much it is missed, and whether the accuracy it
    `needed` lies above `ceiling`, the clean accuracy of the classifier it is measured on."""
    if excess >= 0:
        return "met"
    text = f"missed by {points(-100 * excess)}"
    if needed is not None and ceiling is not None and needed > ceiling:
        text += f" (out of reach: it needs {100 * needed:.1f}%, above that classifier's clean accuracy, {100 * ceiling:.1f}%)"
    return text


def target_rows(results: dict, interval: tuple[float, float]) -> list[tuple[str, str, str]]:
    """Issue 3's targets for the seen classifier as (target, measured, verdict).

    No purifier lifts a classifier above its clean accuracy, so a target beyond it is named out of reach:
    the baseline margin when the best baseline is within 10 pp of the seen classifier's clean accuracy, an
    unseen classifier whose clean accuracy is more than 10 pp below the seen classifier's purified mean.
    """
    seen = results["seen"]
    s = results["summary"][seen]
    purified = s["mean_purified"]
    best_name, best = max(s["mean_baselines"].items(), key=lambda kv: kv[1])
    clean = {c: results["clean"][c]["none"]["acc"] for c in results["summary"]}
    lo, hi = interval
    rows = [(f"mean purified accuracy over the 7 paper attacks ≥ {100 * TARGET_MEAN:.0f}%",
             f"{100 * purified:.1f}% (95% interval {100 * lo:.1f}–{100 * hi:.1f}%)",
             verdict(purified - TARGET_MEAN, TARGET_MEAN, clean[seen])),
            (f"≥ best baseline + {100 * TARGET_BASELINE_MARGIN:.0f} pp",
             f"best baseline {best_name} {100 * best:.1f}%, margin {points(100 * (purified - best), signed=True)}",
             verdict(purified - best - TARGET_BASELINE_MARGIN, best + TARGET_BASELINE_MARGIN, clean[seen])),
            (f"clean accuracy lost ≤ {TARGET_CLEAN_LOSS_PP:g} pp", points(s["clean_drop_pp"]),
             verdict((TARGET_CLEAN_LOSS_PP - s["clean_drop_pp"]) / 100))]
    for c, entry in results["summary"].items():
        if c != seen:
            gap = entry["mean_purified"] - purified
            rows.append((f"unseen `{c}` within {100 * TARGET_UNSEEN_GAP:.0f} pp of the seen classifier",
                         points(100 * gap, signed=True),
                         verdict(gap + TARGET_UNSEEN_GAP, purified - TARGET_UNSEEN_GAP, clean[c])))
    return rows


def targets_section(results: dict, interval: tuple[float, float], bundle: Path) -> list[str]:
    """The card's targets table and, when one is missed, what was tried: the bundle's attempts.md, written by
    hand from training/README.md, where each figure's command is."""
    rows = target_rows(results, interval)
    lines = ["## Targets (issue 3, oblivious attacks, seen classifier)", "", "| target | measured | verdict |",
             "|---|---|---|", *(f"| {target} | {measured} | {v} |" for target, measured, v in rows)]
    unreachable = [target for target, _, v in rows if "out of reach" in v]
    if unreachable:
        lines += ["", "No purifier can lift a classifier above its clean accuracy, so a target that needs more is out of "
                  "reach whatever the purifier"
                  + ("; the last column of the headline compares classifiers of different strength."
                     if any(target.startswith("unseen") for target in unreachable) else ".")]
    if all(v == "met" for _, _, v in rows):
        return lines + [""]
    attempts = bundle / ATTEMPTS_FILE
    if attempts.exists():
        return lines + ["", "### What was tried for the missed targets", "", attempts.read_text().strip(), ""]
    return lines + ["", f"What was tried for the missed targets is not recorded in this bundle (no `{ATTEMPTS_FILE}` "
                    "beside this card).", ""]


def write_card(ds, results: dict, out: Path) -> None:
    """Writes card.md from results.json (and, for results written before it kept them, the run folder's records)."""
    records = results.get("training_records") or training_records(ds.name)
    metrics, pairs, history, export = (records[k] for k in ("metrics", "pairs", "history", "export"))
    seen = results["seen"]
    cmd = results["command"]
    summ = results["summary"]
    lines = [f"# purifyd bundle `{ds.name}`", "",
             f"Dataset: {ds.note or ds.name}. Purifier: {purifier_origin(results['generator'].get('loss_weights', {}))}. "
             f"Every figure below was written by `PYTHONPATH=training {cmd}` (run from the repository root, "
             "after the training recipe of training/README.md) from the models in this folder; "
             f"n = {results['n']} test images (seeded permutation, seed {results['seed']}), 95% Wilson intervals in parentheses.",
             "", "## Headline (oblivious attacks: the attacker sees only the classifier, the paper's setting)", "",
             "| classifier | role | clean | clean, purified | mean of 7 paper attacks, undefended | purified | "
             "purified, share of clean |", "|---|---|---|---|---|---|---|"]
    intervals = {cname: mean_interval(results["oblivious"][cname], "purifier") for cname in summ}
    for cname, s in summ.items():
        clean = results["clean"][cname]
        lo, hi = intervals[cname]
        lines.append(f"| {cname} | {'seen' if cname == seen else 'unseen'} | {pct(clean['none'])} | {pct(clean['purifier'])} | "
                     f"{100 * s['mean_undefended']:.1f} | **{100 * s['mean_purified']:.1f}** ({100 * lo:.1f}–{100 * hi:.1f}) | "
                     f"{share(s['mean_purified'], clean['none']['acc'])} |")
    s = summ[seen]
    lines += ["", "The interval of a mean over the 7 attacks is the mean of their Wilson bounds: the attacks share "
              "the test images, so their outcomes are correlated, and this interval is never narrower than one "
              "from the per-image outcomes would be (conservative, in the normal approximation).",
              "", *targets_section(results, intervals[seen], out),
              "## Adaptive white-box attacks (through purifier + seen classifier, end to end)", "",
              "The purifier is differentiable, so no BPDA is needed: the attacker back-propagates through it.", "",
              "| attack | parameters | accuracy |", "|---|---|---|"]
    for name, r in results["adaptive"].items():
        lines.append(f"| {name} | {json.dumps(r['params'])} | {pct(r)} (n = {r['n']}) |")
    lines += ["", "An adaptive attacker who knows the purifier defeats it: like every input-purification defense "
              "evaluated this way, it is a defense against oblivious attackers, not a certified one.", ""]
    for cname, per_attack in results["oblivious"].items():
        defenses = [d for d in per_attack[PAPER_ATTACKS[0]] if d != "norms"]
        lines += [f"## Oblivious attacks on `{cname}` ({'seen' if cname == seen else unseen_role(cname, pairs)})", "",
                  "| attack | " + " | ".join(defenses) + " | median L2 of perturbation |", "|---" * (len(defenses) + 2) + "|"]
        for attack, r in per_attack.items():
            extra = f" (success {100 * r['success_rate']:.1f}%)" if attack in L2_ATTACKS else ""
            lines.append(f"| {attack}{extra} | " + " | ".join(pct(r[d]) for d in defenses) + f" | {r['norms']['median_l2']:.3f} |")
        lines.append("")
        if cname == seen:
            lines += weak_attacks(per_attack)
    q = results["quality"]
    lines += ["## Image quality (purified vs clean)", "",
              f"- clean inputs: PSNR {q['clean']['psnr']:.2f} dB, SSIM {q['clean']['ssim']:.4f}",
              f"- PGD inputs: adversarial PSNR {q['pgd']['psnr_adversarial']:.2f} dB / SSIM {q['pgd']['ssim_adversarial']:.4f}; "
              f"purified PSNR {q['pgd']['psnr_purified']:.2f} dB / SSIM {q['pgd']['ssim_purified']:.4f}", "",
              "![contact sheet](figures/contact_sheet.png)", "", "![accuracy vs epsilon](figures/accuracy_vs_eps.png)", "",
              *sweep_section(results)]
    check = _read(out / "through_purify.json")
    if check:
        lines += ["## The same images through `purify` (purifyd's Swift engine and pipeline)", "",
                  through_purify_paragraph(ds.name, check), ""]
    if "mean_purified_no_residual" in s:
        lines += ["## Ablation: no residual blocks", "",
                  f"Mean purified accuracy over the 7 paper attacks (seen): with residual blocks {100 * s['mean_purified']:.1f}%, "
                  f"without {100 * s['mean_purified_no_residual']:.1f}% (same pairs and losses; "
                  + epochs_compared(history, records["ablation_history"])
                  + kept_epochs(results["generator"], results.get("ablation_generator")) + "): the residual blocks "
                  + ("add " if s["mean_purified"] >= s["mean_purified_no_residual"] else "cost ")
                  + points(abs(100 * (s["mean_purified"] - s["mean_purified_no_residual"]))) + ".", ""]
    else:
        lines += ["## Ablation: no residual blocks", "",
                  "Not run for this bundle yet (`python -m purifyd_train gan --no-residual`, then evaluate).", ""]
    g = results["generator"]
    attacked = pairs.get("classifier", seen)  # the pairs' default target
    lines += ["## Model", "",
              f"- Generator: U-Net, {g['parameters']:,} parameters, {g['config']} (residual blocks per encoder level; "
              f"{sum(g['config']['res_blocks'])} in all), trained {trained_epochs(g, history)} over {g['pairs']:,} pairs drawn at random from the set below{selected_epoch(g)}; BatchNorm in eval mode and no "
              "dropout at inference, so outputs are deterministic.",
              *(["- Output: the generator's Tanh output is a correction added to its input and clipped to [0, 1] "
                 "(a global skip, `--residual-output`; the paper's generator outputs the image itself)."]
                if g["config"].get("residual_output") else []),
              "- Discriminator: conditional PatchGAN with two residual blocks. " + loss_line(g.get("loss_weights", {})),
              schedule_line(g.get("schedule")),
              "- Perceptual features: a VGG-style network (`FeatureNet`) trained here on the same training set, "
              "separate from every evaluated classifier. It stands in for ImageNet VGG19, whose weights cannot be "
              "downloaded on this machine; its features are lower-level and dataset-specific.",
              *[source_network_line(ds, metrics, name, seen, bool(g.get("loss_weights", {}).get("source_guidance")))
                for name in FAMILY_SOURCES if name in metrics],
              f"- Training pairs (adversarial against `{attacked}` unless named, on training "
              "images only, seeded): " + "; ".join(attack_pairs(k, v, attacked)
                                                   for k, v in pairs.get("attacks", {}).items())
              + noise_pairs(pairs) + f"; clean pairs: {pairs.get('clean', 0)}" + pair_rounds(pairs) + ".",
              *([line] if (line := pair_attack_parameters(pairs)) else []),
              "- Input: NCHW float32 in [0,1]; reflect-padded (centred) to a multiple of "
              f"{2 ** len(g['config']['res_blocks'])} and cropped back.",
              f"- ONNX (opset 17) vs PyTorch, max |error|: {export.get('max_abs_error', 'not exported yet')}.", "",
              "## Classifiers (clean test accuracy on the full test set, from training)", ""]
    for name, m in metrics.items():
        role = "seen" if name == seen else ("unseen" if name in summ else source_role(name, g, pairs))
        lines.append(f"- `{name}` ({role}): {100 * m['test_accuracy']:.2f}% ({m['epochs']} epochs, {m['train_images']} training images)")
    if history:
        lines += ["", "## GAN training history", "",
                  "Losses are per-pair means of the unweighted terms; the validation columns are the seen classifier's "
                  "accuracy on a fixed set of purified PGD and purified clean images: "
                  + validation_sets(history) + ".", "", *history_table(history)]
    lines += ["", "## Attack parameters (torchattacks 3.5.1, ℓ∞ budget ε = " f"{results['eps']:.4g})", ""]
    lines += [f"- {name}: `{json.dumps(params)}`" for name, params in results["attacks"].items()]
    lines += ["", "DeepFool runs as `BoxDeepFool` (`training/purifyd_train/attacks.py`, on torchattacks' `Attack`): "
              "torchattacks' DeepFool clamps to [0, 1] after each linearised step and left 20–50% of MNIST images "
              "correctly classified after 50 steps; the box-aware version drops the pixels that a step would push past "
              "a bound, and succeeds on (nearly) every image (`python -m purifyd_train compare-deepfool --dataset D` "
              "compares the two on the trained classifiers)."]
    lines += ["", "Baselines: " + "; ".join(f"{k} `{json.dumps(v)}`" for k, v in results["baselines"].items()) + "."]
    if ds.source_jpeg_quality and any(v.get("quality") == ds.source_jpeg_quality for v in results["baselines"].values()):
        lines += ["", jpeg_source_caveat(ds)]
    tuning = results.get("baseline_tuning")
    if tuning:
        lines += ["", f"The bit depth and the TV weight were chosen on {tuning['n']} training images (not test images): "
                  f"the setting with the best mean of clean accuracy and accuracy under {tuning['attack']} on the seen "
                  "classifier.", "", "| setting | clean | PGD | mean |", "|---|---|---|---|"]
        for label, table in (("bits", tuning["bitdepth_scores"]), ("TV weight", tuning["tv_scores"])):
            lines += [f"| {label} {k} | {100 * v['clean']:.1f} | {100 * v['pgd']:.1f} | {100 * v['score']:.1f} |"
                      for k, v in table.items()]
    lines.append("")
    (out / "card.md").write_text("\n".join(lines) + "\n")
