from purifyd_train.card import validation_sets


def test_validation_sets_name_the_images_of_each_run():
    held_out = {"val_images": "held-out training", "val_n": 500}
    assert validation_sets([{"run": "gan", **held_out}]).startswith("500 held-out training images")
    mixed = validation_sets([{"run": "gan-g10"}, {"run": "gan-g10"}, {"run": "gan", **held_out}])
    assert mixed.startswith("500 test images (seed 99") and mixed.endswith("for gan")
    assert "for gan-g10;" in mixed
