"""python -m purifyd_train <command> [args]: classifiers | pairs | gan | export | evaluate | compare-deepfool | jpeg-check | bundle | bundle-card | export-folder | robust-train | robust-export | robust-evaluate."""
import importlib
import sys

COMMANDS = {"classifiers": "train_classifiers", "pairs": "make_pairs", "gan": "train_gan",
            "export": "export", "evaluate": "evaluate", "compare-deepfool": "compare_deepfool",
            "jpeg-check": "jpeg_check", "bundle": "bundle", "bundle-card": "bundle_card",
            "export-folder": "export_folder",
            "robust-train": "robust.train", "robust-evaluate": "robust.evaluate",
            "robust-export": "robust.export"}

if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
    sys.exit(f"usage: python -m purifyd_train {{{'|'.join(COMMANDS)}}} [args]")
importlib.import_module(f"purifyd_train.{COMMANDS[sys.argv[1]]}").main(sys.argv[2:])
