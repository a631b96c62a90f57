"""The end-to-end check's images are rounded to 8 bits the way purify rounds them."""
import numpy as np
import torch
from PIL import Image

from purifyd_train.evaluation.through_purify import as_8bit, write_pngs

# Halves round up (purify's `UInt8(clamped * 255 + 0.5)`), not to even as torch.round does.
VALUES = [-0.1, 0.3 / 255, 0.5 / 255, 0.7 / 255, 2.5 / 255, 100.2 / 255, 254.8 / 255, 1.3]
PIXELS = [0, 0, 1, 1, 3, 100, 255, 255]


def test_purified_images_are_clamped_and_rounded_to_8_bits_like_purify():
    assert (as_8bit(torch.tensor(VALUES)) * 255).round().tolist() == PIXELS


def test_attacked_images_are_saved_with_the_same_rounding(tmp_path):
    x = torch.tensor(VALUES).view(1, 1, 1, -1)
    write_pngs(x, torch.tensor([7]), tmp_path)
    assert np.asarray(Image.open(tmp_path / "00000_7.png")).flatten().tolist() == PIXELS
