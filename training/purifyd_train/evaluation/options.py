"""The evaluation command's options and the ε sweep's shape, and the sizes of a recorded evaluation command
(the card of an evaluation is rewritten from its results.json)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..runs import command_parser

SWEEP_FRACTIONS = (0.25, 0.5, 0.75, 1.0, 1.25)  # of the dataset's budget
SWEEP_ATTACKS = ("FGSM", "PGD")

DESCRIPTION = """Evaluates a dataset's purifier under the protocol of ../shared/DESIGN.md §5 and writes its card.

Oblivious attacks (the paper's setting: the attacker sees only the classifier) against the seen
and the unseen classifiers; the classic baselines under the same protocol; adaptive white-box
attacks through purifier + classifier; image quality; an ε sweep and a contact sheet.
`--quick` runs a small version into training/runs/<dataset>/eval-quick instead of models/; `--out`
names another bundle folder (one that `export --out` wrote, for a candidate beside the shipped one).
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command's options with their defaults filled in."""
    p = command_parser(DESCRIPTION, seed=0)
    p.add_argument("--quick", action="store_true", help="200 images, fewer steps, results under training/runs")
    p.add_argument("--n", type=int, default=None, help="test images (default 2000, quick 200)")
    p.add_argument("--adaptive-n", type=int, default=None, help="images for adaptive attacks (default 500, quick 100)")
    p.add_argument("--sweep-n", type=int, default=None, help="images for the ε sweep (default 1000, quick 100)")
    p.add_argument("--val-n", type=int, default=None,
                   help="training images to tune the baselines on (default 1000, quick 200)")
    p.add_argument("--through-purify", type=Path, metavar="PURIFY", default=None,
                   help="instead: PGD test set as PNGs through this `purify` binary, accuracy compared with PyTorch")
    p.add_argument("--card-only", action="store_true", help="only rewrite card.md from the results.json already there")
    p.add_argument("--out", type=Path, default=None,
                   help="the bundle folder: results.json, card.md, figures/, and the bundle --through-purify runs "
                        "(default models/D; with --quick, results under training/runs/D/eval-quick)")
    args = p.parse_args(argv)
    args.n = args.n or (200 if args.quick else 2000)
    args.adaptive_n = min(args.n, args.adaptive_n or (100 if args.quick else 500))
    args.sweep_n = min(args.n, args.sweep_n or (100 if args.quick else 1000))
    args.val_n = args.val_n or (200 if args.quick else 1000)
    return args


def recorded_options(command: str) -> argparse.Namespace:
    """The options of an evaluation command as results.json records it (`python -m purifyd_train evaluate ...`)."""
    words = command.split()
    return parse_args(words[words.index("evaluate") + 1:])
