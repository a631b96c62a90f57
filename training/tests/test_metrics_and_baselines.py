import torch

from purifyd_train.evaluation.baselines import bit_depth, jpeg, median3, total_variation
from purifyd_train.evaluation.metrics import psnr, ssim
from purifyd_train.intervals import wilson


def test_wilson_interval_contains_the_proportion_and_narrows_with_n():
    lo, hi = wilson(80, 100)
    assert lo < 0.8 < hi
    lo2, hi2 = wilson(800, 1000)
    assert hi2 - lo2 < hi - lo
    assert wilson(0, 50)[0] == 0.0 and wilson(50, 50)[1] == 1.0


def test_ssim_and_psnr_of_identical_and_noisy_images():
    x = torch.rand(4, 3, 32, 32)
    assert abs(ssim(x, x) - 1.0) < 1e-5
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert ssim(noisy, x) < 0.95
    assert 15 < psnr(noisy, x) < 25


def test_bit_depth_quantises_to_the_right_levels():
    x = torch.linspace(0, 1, 101).view(1, 1, 1, 101)
    assert set(bit_depth(x, 1).unique().tolist()) == {0.0, 1.0}
    assert len(bit_depth(x, 3).unique()) == 8


def test_median_removes_an_isolated_spike():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    assert torch.equal(median3(x), torch.zeros(1, 1, 5, 5))
    ramp = torch.arange(25, dtype=torch.float32).view(1, 1, 5, 5)
    assert torch.equal(median3(ramp)[..., 1:4, 1:4], ramp[..., 1:4, 1:4])


def test_jpeg_and_tv_keep_shape_and_range():
    x = torch.rand(3, 3, 32, 32)
    for out in (jpeg(x), total_variation(x, 0.1, steps=10)):
        assert out.shape == x.shape
        assert float(out.min()) >= 0 and float(out.max()) <= 1
    noisy = torch.rand(1, 1, 16, 16)
    smooth = total_variation(noisy, 0.5, steps=50)
    tv = lambda t: (t[..., 1:, :] - t[..., :-1, :]).abs().sum() + (t[..., :, 1:] - t[..., :, :-1]).abs().sum()
    assert tv(smooth) < tv(noisy)
