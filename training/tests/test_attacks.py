import torch
from torch import nn

from purifyd_train.attacks.deepfool import BoxDeepFool


def saturated_images_and_model():
    """Binary 8x8 images (every pixel at a bound) and a small ReLU network that classifies them."""
    torch.manual_seed(0)
    x = (torch.rand(64, 1, 8, 8) > 0.7).float()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3)).eval()
    y = model(x).argmax(1)
    return x, y, model


def test_box_deepfool_fools_every_image_and_stays_in_the_box():
    x, y, model = saturated_images_and_model()
    adv = BoxDeepFool(model, steps=50, overshoot=0.02)(x, y)
    assert adv.min() >= 0 and adv.max() <= 1
    assert (model(adv).argmax(1) != y).all()


def test_box_deepfool_leaves_misclassified_images_alone():
    x, y, model = saturated_images_and_model()
    wrong = (y + 1) % 3
    assert torch.equal(BoxDeepFool(model, steps=5)(x, wrong), x)
