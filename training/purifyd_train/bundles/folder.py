"""Labelled images from a folder: one sub-folder per class, PNG or JPEG, any size.

Sorted sub-folder names are the class order (label i is the i-th name). Images are brought to the
classifier's input size with Pillow's bilinear resize, the resize purifyd itself applies, and split
into training, validation and test images per class from a seed, so the split is the same on every
run over the same folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..runs import progress_options
from .errors import BundleError, no_input, usage_error
from .records import FolderListing, Split

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Pillow modes that hold one colour channel (alpha, where there is one, is dropped like purifyd does for the models).
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
# How many offending paths an error message names before it says how many more there are.
NAMED = 5


def _named(paths: list, root: Path) -> str:
    shown = ", ".join(str(Path(p).relative_to(root)) for p in paths[:NAMED])
    return shown + (f" and {len(paths) - NAMED} more" if len(paths) > NAMED else "")


def scan_folder(root: Path) -> FolderListing:
    """Lists a class folder tree; BundleError (65, or 66 when it is missing) for anything but class
    folders of PNG and JPEG files, or fewer than two classes. Dot-files are skipped, as purify skips them."""
    root = Path(root)
    if not root.is_dir():
        raise no_input(f"no data folder at {root}")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    stray = [p for p in entries if not p.is_dir()]
    if stray:
        raise BundleError(f"{root}: files outside the class folders (each class is a sub-folder of images): "
                          f"{_named(stray, root)}")
    classes = [p.name for p in entries]
    if len(classes) < 2:
        raise BundleError(f"{root}: {len(classes)} class folder{'s' if len(classes) != 1 else ''} "
                          f"({', '.join(classes) or 'none'}): a classifier needs at least two classes, one sub-folder each")
    files, labels, bad, empty = [], [], [], []
    for label, name in enumerate(classes):
        members = sorted(p for p in (root / name).iterdir() if not p.name.startswith("."))
        bad += [p for p in members if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES]
        images = [p for p in members if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            empty.append(name)
        files += images
        labels += [label] * len(images)
    if bad:
        raise BundleError(f"{root}: not PNG or JPEG images (.png, .jpg, .jpeg): {_named(bad, root)}")
    if empty:
        raise BundleError(f"{root}: class folders without images: {', '.join(empty)}")
    return FolderListing(root, tuple(classes), tuple(files), tuple(labels))


def _channels(image: Image.Image) -> int:
    return 1 if image.mode in GREY_MODES else 3


def _pixels(image: Image.Image, channels: int) -> Image.Image:
    """The image as 8-bit L or RGB (16-bit grey scaled down, alpha and palettes resolved)."""
    if image.mode.startswith("I") or image.mode == "F":
        scale = 257.0 if image.mode.startswith("I;16") or np.asarray(image).max() > 255 else 1.0
        image = Image.fromarray(np.clip(np.asarray(image, dtype=np.float64) / scale, 0, 255).round().astype(np.uint8))
    return image.convert("L" if channels == 1 else "RGB")


def image_channels(listing: FolderListing) -> int:
    """The one channel count of every image (1 grey, 3 colour), from the headers; BundleError for an
    unreadable file or for a mix."""
    found: dict[int, list[Path]] = {}
    for path in listing.files:
        try:
            with Image.open(path) as image:
                found.setdefault(_channels(image), []).append(path)
        except (UnidentifiedImageError, OSError) as error:
            raise BundleError(f"{path}: not a readable PNG or JPEG image ({error})") from None
    if len(found) > 1:
        grey, colour = found[1], found[3]
        raise BundleError(f"{listing.root}: mixed channel counts: {len(grey)} grey images (e.g. {_named(grey, listing.root)}) "
                          f"and {len(colour)} colour images (e.g. {_named(colour, listing.root)}); convert them to one")
    return next(iter(found))


def load_images(listing: FolderListing, channels: int, size: tuple[int, int], progress: bool = False) -> torch.Tensor:
    """Every image of the listing as uint8 N,C,H,W at `size` ([height, width]), resized with Pillow's
    bilinear filter where it differs."""
    height, width = size
    out = np.empty((len(listing.files), height, width, channels), dtype=np.uint8)
    for i, path in enumerate(tqdm(listing.files, desc="loading images", unit="img", disable=not progress,
                                      **progress_options())):
        try:
            with Image.open(path) as image:
                image = _pixels(image, channels)
                if image.size != (width, height):
                    image = image.resize((width, height), Image.BILINEAR)
                out[i] = np.asarray(image).reshape(height, width, channels)
        except (UnidentifiedImageError, OSError) as error:
            raise BundleError(f"{path}: not a readable PNG or JPEG image ({error})") from None
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def split_listing(listing: FolderListing, seed: int, val_fraction: float, test_fraction: float,
                  min_train: int = 2) -> Split:
    """A stratified split: in each class, a seeded permutation's first ⌊n·test⌋ images are test, the next
    ⌊n·val⌋ validation, the rest training. BundleError naming the classes too small for it."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise usage_error(f"--val-fraction {val_fraction} and --test-fraction {test_fraction} must each be in (0, 1) "
                          "and leave training images")
    labels = np.asarray(listing.labels)
    rng = np.random.default_rng(seed)
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    small = []
    for label, name in enumerate(listing.classes):
        members = np.flatnonzero(labels == label)
        n_test, n_val = int(len(members) * test_fraction), int(len(members) * val_fraction)
        if n_test < 1 or n_val < 1 or len(members) - n_test - n_val < min_train:
            need = max(int(np.ceil(1 / test_fraction)), int(np.ceil(1 / val_fraction)), min_train + 2)
            small.append(f"{name} ({len(members)})")
            continue
        members = members[rng.permutation(len(members))]
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test:n_test + n_val])
        parts["train"].append(members[n_test + n_val:])
    if small:
        raise BundleError(f"{listing.root}: too few images for a {100 * val_fraction:g}% validation and "
                          f"{100 * test_fraction:g}% test split (each class needs at least one validation image, one "
                          f"test image and {min_train} training images, so at least {need} images here): "
                          + ", ".join(small))
    return Split(seed, val_fraction, test_fraction, *(np.sort(np.concatenate(parts[k])) for k in ("train", "val", "test")))
