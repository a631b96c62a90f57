import torch

from purifyd_train.models.networks import PatchDiscriminator, Purifier, UNetGenerator, classifier_zoo, reflect_pad_to


def test_generator_has_seven_residual_blocks_and_maps_unit_range_to_unit_range():
    g = UNetGenerator(3, ngf=8, cap=16).eval()
    assert sum(g.res_blocks) == 7
    x = torch.rand(2, 3, 32, 48)
    y = g(x)
    assert y.shape == x.shape
    assert float(y.detach().min()) >= 0.0 and float(y.detach().max()) <= 1.0


def test_generator_is_deterministic_in_eval_mode():
    g = UNetGenerator(1, ngf=8, cap=16).eval()
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(g(x), g(x))


def test_residual_output_generator_starts_as_the_identity_and_stays_in_the_unit_range():
    g = UNetGenerator(3, ngf=8, cap=16, residual_output=True).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(g(x), x)
        g.out[0].bias.fill_(5.0)
        y = g(x)
    assert torch.equal(y, (x + torch.tanh(torch.tensor(5.0))).clamp(0, 1)) and float(y.max()) == 1.0


def test_reflect_padding_is_centred_and_purifier_crops_back():
    x = torch.arange(28 * 28, dtype=torch.float32).view(1, 1, 28, 28) / 784
    padded, (left, right, top, bottom) = reflect_pad_to(x, 16)
    assert padded.shape[-2:] == (32, 32)
    assert (left, right, top, bottom) == (2, 2, 2, 2)
    assert torch.equal(padded[..., 2:30, 2:30], x)
    odd, pad = reflect_pad_to(torch.rand(1, 1, 29, 17), 16)
    assert odd.shape[-2:] == (32, 32) and pad == (7, 8, 1, 2)
    purifier = Purifier(UNetGenerator(1, ngf=8, cap=16)).eval()
    assert purifier(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)


def test_discriminator_scores_patches():
    d = PatchDiscriminator(3, ndf=8)
    assert d(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)).shape == (2, 1, 8, 8)


def test_classifier_zoo_puts_three_distinct_architectures_first_the_seen_one():
    for dataset, channels, size in (("mnist", 1, 28), ("cifar10", 3, 32)):
        zoo = classifier_zoo(dataset, channels, size)
        assert len({type(m) for m in zoo.values()}) == 3
        for model in zoo.values():
            assert model.eval()(torch.rand(2, channels, size, size)).shape == (2, 10)


def test_learning_rate_holds_then_falls_linearly_to_zero_by_epochs_or_by_time():
    from purifyd_train.training.gan import learning_rate_factor, run_progress
    assert learning_rate_factor(run_progress(3, 10, 0, None), 0.5) == 1.0
    assert learning_rate_factor(run_progress(7.5, 10, 0, None), 0.5) == 0.5
    assert learning_rate_factor(run_progress(1, 10, 90, 2.0), 0.5) == 0.5  # 90 s of 2 minutes comes first
    assert learning_rate_factor(run_progress(12, 10, 0, None), 0.5) == 0.0
    assert learning_rate_factor(0.99, None) == 1.0


def test_weight_average_follows_the_network_and_copies_integer_statistics():
    from purifyd_train.training.gan import WeightAverage
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(net, decay=0.5)
    average.updates = 100  # past the warm-up, as when a run resumes
    start = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net[1].num_batches_tracked.fill_(7)
    average.update()
    assert torch.allclose(average.net[0].weight, start + 0.5)
    assert int(average.net[1].num_batches_tracked) == 7 and not average.net[0].weight.requires_grad
    fresh = WeightAverage(net, decay=0.999)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    fresh.update()  # the first update's decay is 1/10, not 0.999
    assert torch.allclose(fresh.net[0].weight, start + 1.0 + 0.9)
