"""The end-to-end check's reference rounds a purified image the way purify keeps it before classifying."""
import torch

from purifyd_train.through_purify import as_8bit


def test_purified_images_are_clamped_and_rounded_to_8_bits_like_purify():
    x = torch.tensor([-0.1, 0.3 / 255, 0.7 / 255, 100.2 / 255, 254.8 / 255, 1.3])
    assert (as_8bit(x) * 255).tolist() == [0, 0, 1, 100, 255, 255]
