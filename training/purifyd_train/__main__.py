"""python -m purifyd_train <command> [args]: classifiers | pairs | gan | export | evaluate | compare-deepfool | jpeg-check | bundle | bundle-card | export-folder | robust-train | robust-export | robust-evaluate | robust-card."""
import importlib
import sys

COMMANDS = {"classifiers": "training.classifiers", "pairs": "training.pairs", "gan": "training.gan",
            "export": "bundles.export", "evaluate": "evaluation.evaluate",
            "compare-deepfool": "evaluation.compare_deepfool", "jpeg-check": "evaluation.jpeg_check",
            "bundle": "bundles.bundle", "bundle-card": "cards.bundle_card", "export-folder": "bundles.export_folder",
            "robust-train": "robust.train", "robust-evaluate": "robust.evaluate", "robust-export": "robust.export",
            "robust-card": "cards.robust_card"}

if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
    sys.exit(f"usage: python -m purifyd_train {{{'|'.join(COMMANDS)}}} [args]")
importlib.import_module(f"purifyd_train.{COMMANDS[sys.argv[1]]}").main(sys.argv[2:])
