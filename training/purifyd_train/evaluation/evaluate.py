"""Evaluates a dataset's purifier under the protocol of ../shared/DESIGN.md §5 and writes its card
(the options: options.py)."""
from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Callable

import torchattacks
from torch import nn

from ..attacks.protocol import L2_ATTACKS, PAPER_ATTACKS, AttackConfig, evaluation_attacks, run_attack
from ..cards.dataset_card import write_card
from ..data.datasets import spec, test_subset, train_tail
from ..models.networks import Purifier, classifier_zoo
from ..models.ops import batched, predict
from ..runs import REPO_ROOT, log, progress_options, run_dir, setup, write_json
from ..training.gan import load_generator, run_folder
from ..training.records import training_records
from ..training.trained import load_classifier
from .baselines import baselines, tune
from .figures import contact_sheet, plot_sweep
from .inputs import EvaluationInputs
from .metrics import acc_record, perturbation_norms, psnr, ssim
from .options import SWEEP_ATTACKS, SWEEP_FRACTIONS, parse_args, recorded_options


def generator_record(generator: nn.Module, state: dict) -> dict:
    """What results.json says about a generator: its shape, the epoch it keeps and how it was trained."""
    return {"config": state["config"], "epoch": state["epoch"], "pairs": state["pairs"],
            "loss_weights": state["loss_weights"], "selection": state.get("selection"), "schedule": state.get("schedule"),
            "parameters": sum(p.numel() for p in generator.parameters())}


def evaluate(args) -> dict:
    """The protocol on a dataset's trained models (the run folder) and its seeded test subset."""
    ds = spec(args.dataset)
    x, y = test_subset(ds, args.n, seed=args.seed, root=args.data)
    generator, gen_state = load_generator(run_folder(ds.name) / "generator.pt")
    ablation_path = run_folder(ds.name, ablation=True) / "generator.pt"
    ablation = None
    if ablation_path.exists():
        ablation_generator, ablation_state = load_generator(ablation_path)
        ablation = (Purifier(ablation_generator).eval(), generator_record(ablation_generator, ablation_state))
    zoo = classifier_zoo(ds.name, ds.channels, ds.size)
    inputs = EvaluationInputs(
        ds.name, x, y, Purifier(generator).eval(), generator_record(generator, gen_state),
        {name: load_classifier(ds.name, name)[1] for name in zoo}, train_tail(ds, args.val_n, args.seed, args.data),
        ds.eps, evaluation_attacks(ds.name, ds.eps, quick=args.quick),
        lambda eps: sweep_attacks(ds.name, eps, args.quick), args.figures, args.seed, args.quick, args.adaptive_n,
        args.sweep_n, ablation=ablation)
    return run_evaluation(inputs)


def run_evaluation(inputs: EvaluationInputs) -> dict:
    """Clean accuracy, oblivious attacks with the purifier and the baselines, adaptive attacks, image quality
    and the ε sweep (with its figures), as the results dictionary the card reads."""
    from tqdm import tqdm
    x, y, purifier = inputs.x, inputs.y, inputs.purifier
    purify = lambda t: batched(purifier, t, 250)
    defenses = {"none": (lambda t: t, {}), "purifier": (purify, {})}
    if inputs.ablation:
        ablation = inputs.ablation[0]
        defenses["purifier-no-residual"] = (lambda t: batched(ablation, t, 250), {})
    classifiers = inputs.classifiers
    seen = next(iter(classifiers))
    # The baselines' strengths are chosen on training images, never on the test images they are scored on.
    tuning = tune(classifiers[seen], *inputs.tuning, inputs.eps, inputs.seed)
    log(f"baselines tuned on {len(inputs.tuning[0])} validation images: bits {tuning['bits']}, TV weight {tuning['tv_weight']}")
    defenses.update(baselines(tuning))
    attacks = inputs.attacks
    results: dict = {"dataset": inputs.name, "n": len(x), "seed": inputs.seed, "quick": inputs.quick, "eps": inputs.eps,
                     "seen": seen, "attacks": {a.name: a.params for a in attacks},
                     "baselines": {k: v[1] for k, v in defenses.items() if k not in ("none", "purifier", "purifier-no-residual")},
                     "baseline_tuning": tuning,
                     "generator": inputs.generator,
                     "ablation_generator": inputs.ablation and inputs.ablation[1],
                     "clean": {}, "oblivious": {}, "adaptive": {}, "quality": {}, "sweep": {}}
    t0 = time.time()
    defended_clean = {name: fn(x) for name, (fn, _) in defenses.items()}
    for cname, model in classifiers.items():
        results["clean"][cname] = {d: acc_record(predict(model, xd), y) for d, xd in defended_clean.items()}
        log(f"clean {cname}: " + ", ".join(f"{d} {r['acc']:.4f}" for d, r in results["clean"][cname].items()))
    results["quality"]["clean"] = {"psnr": psnr(defended_clean["purifier"], x), "ssim": ssim(defended_clean["purifier"], x)}
    bar = tqdm(total=len(classifiers) * len(attacks) + 2, desc="evaluation", unit="attack", disable=not inputs.progress,
               **progress_options())
    for cname, model in classifiers.items():
        results["oblivious"][cname] = {}
        # Baselines are evaluated on the seen classifier; the unseen ones show the purifier's transfer.
        names = list(defenses) if cname == seen else ["none", "purifier"]
        for attack in attacks:
            adv = run_attack(attack.build(model, inputs.seed, inputs.n_classes), x, y)
            record = {"norms": perturbation_norms(adv, x)}
            for d in names:
                record[d] = acc_record(predict(model, defenses[d][0](adv)), y)
            if attack.name in L2_ATTACKS:
                record["success_rate"] = 1 - record["none"]["acc"]
            results["oblivious"][cname][attack.name] = record
            log(f"{cname} {attack.name}: " + ", ".join(f"{d} {record[d]['acc']:.4f}" for d in names)
                + f" [{time.time() - t0:.0f}s]")
            bar.update(1)
            if cname == seen and attack.name == "PGD":
                purified = purify(adv)
                results["quality"]["pgd"] = {"psnr_purified": psnr(purified, x), "ssim_purified": ssim(purified, x),
                                             "psnr_adversarial": psnr(adv, x), "ssim_adversarial": ssim(adv, x)}
                contact_sheet(x[:10], adv[:10], purified[:10], inputs.figures / "contact_sheet.png", inputs.name)
    # Adaptive white-box: the attacker differentiates through purifier + classifier end to end.
    xa, ya = x[:inputs.adaptive_n], y[:inputs.adaptive_n]
    pipeline = nn.Sequential(purifier, classifiers[seen]).eval()
    steps = 10 if inputs.quick else 40
    adaptive = [AttackConfig("PGD", dict(eps=inputs.eps, alpha=2.5 * inputs.eps / steps, steps=steps, random_start=True)),
                AttackConfig("APGD", dict(norm="Linf", eps=inputs.eps, steps=20 if inputs.quick else 100, n_restarts=1, loss="ce"))]
    for attack in adaptive:
        atk = attack.build(pipeline, inputs.seed) if attack.name != "APGD" else torchattacks.APGD(pipeline, seed=inputs.seed, **attack.params)
        adv = run_attack(atk, xa, ya, batch=100)
        results["adaptive"][attack.name] = {"params": attack.params, **acc_record(predict(pipeline, adv), ya)}
        log(f"adaptive {attack.name}: {results['adaptive'][attack.name]['acc']:.4f} [{time.time() - t0:.0f}s]")
        bar.update(1)
    bar.close()
    results["sweep"] = eps_sweep(inputs.eps, inputs.sweep_attacks, classifiers[seen], defenses,
                                 x[:inputs.sweep_n], y[:inputs.sweep_n], inputs.seed)
    plot_sweep(results["sweep"], inputs.figures / "accuracy_vs_eps.png", inputs.name)
    results["summary"] = summary(results)
    results["minutes"] = (time.time() - t0) / 60
    return results


def sweep_attacks(dataset: str, eps: float, quick: bool, cw: dict | None = None) -> list[AttackConfig]:
    """The ε sweep's attacks at one budget: the evaluation's own FGSM and PGD (PGD's step scales with ε)."""
    return [a for a in evaluation_attacks(dataset, eps, quick, cw) if a.name in SWEEP_ATTACKS]


def eps_sweep(eps: float, attacks_at: Callable[[float], list[AttackConfig]], model, defenses, x, y, seed: int) -> dict:
    """Accuracy under each defense at SWEEP_FRACTIONS of the budget eps."""
    out = {}
    for frac in SWEEP_FRACTIONS:
        for attack in attacks_at(eps * frac):
            adv = run_attack(attack.build(model, seed), x, y)
            out.setdefault(attack.name, []).append({"eps": eps * frac, **{d: acc_record(predict(model, fn(adv)), y)["acc"]
                                                                          for d, (fn, _) in defenses.items()}})
    return out


def summary(results: dict) -> dict:
    seen = results["seen"]
    out = {}
    for cname, per_attack in results["oblivious"].items():
        mean = lambda d: statistics.mean(per_attack[a][d]["acc"] for a in PAPER_ATTACKS if d in per_attack[a])
        entry = {"mean_undefended": mean("none"), "mean_purified": mean("purifier"),
                 "clean_drop_pp": 100 * (results["clean"][cname]["none"]["acc"] - results["clean"][cname]["purifier"]["acc"])}
        if cname == seen:
            others = [d for d in per_attack[PAPER_ATTACKS[0]] if d not in ("none", "purifier", "purifier-no-residual", "norms")]
            entry["mean_baselines"] = {d: mean(d) for d in others}
            if "purifier-no-residual" in per_attack[PAPER_ATTACKS[0]]:
                entry["mean_purified_no_residual"] = mean("purifier-no-residual")
        out[cname] = entry
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup(args.seed, args.threads, args.device)
    ds = spec(args.dataset)
    out = args.out or (run_dir(ds.name) / "eval-quick" if args.quick else REPO_ROOT / "models" / ds.name)
    out.mkdir(parents=True, exist_ok=True)
    if args.through_purify:
        from .through_purify import main as through_purify
        through_purify(ds.name, args.through_purify, args.n, args.seed, out, bundle=args.out)
        return
    if args.card_only:
        results = json.loads((out / "results.json").read_text())
        write_card(ds, results, out, recorded_options(results["command"]).sweep_n)
        return
    args.figures = out / "figures"
    results = evaluate(args)
    results["command"] = " ".join(["python -m purifyd_train evaluate", *(argv if argv is not None else sys.argv[1:])])
    results["training_records"] = training_records(ds.name)
    write_json(out / "results.json", results)
    write_card(ds, results, out, args.sweep_n)
    log(f"{ds.name}: wrote {out / 'results.json'} and card.md ({results['minutes']:.1f} min)")


if __name__ == "__main__":
    main()
