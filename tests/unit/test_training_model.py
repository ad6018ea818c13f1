"""The architectures: shapes, the seed network's layout, augmentation kept out of the export,
the stroke-width and low-resolution augmentations."""

from __future__ import annotations

import numpy as np
import pytest

from training.model import (
    ARCHITECTURES,
    DEFAULT_ARCH,
    RandomLowResolution,
    RandomStrokeWidth,
    build_model,
    low_resolution_matrix,
    with_augmentation,
)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_arch_maps_a_batch_to_ten_probabilities(arch):
    model = build_model(arch)
    batch = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    probabilities = np.asarray(model(batch, training=False))
    assert probabilities.shape == (3, 10)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_the_default_arch_is_compact_and_small():
    assert DEFAULT_ARCH == "compact"
    assert build_model().count_params() * 10 < build_model("seed").count_params()


def test_seed_arch_is_the_2019_network():
    model = build_model("seed")
    described = [(layer.__class__.__name__, layer.output.shape[1:]) for layer in model.layers]
    assert described == [
        ("Conv2D", (28, 28, 32)),
        ("MaxPooling2D", (14, 14, 32)),
        ("Conv2D", (14, 14, 64)),
        ("MaxPooling2D", (7, 7, 64)),
        ("Flatten", (3136,)),
        ("Dense", (1024,)),
        ("Dropout", (1024,)),
        ("Dense", (10,)),
    ]
    optimizer = ARCHITECTURES["seed"].optimizer(1000)
    assert optimizer.__class__.__name__ == "Adam"
    assert float(optimizer.learning_rate) == pytest.approx(1e-4)


def test_augmentation_wraps_the_network_without_copying_it():
    network = build_model("compact")
    trainable = with_augmentation(network, "compact")
    assert trainable.layers[-1] is network
    assert {id(w) for w in network.weights} <= {id(w) for w in trainable.weights}
    assert not any("augmentation" in layer.name for layer in network.layers)
    assert with_augmentation(build_model("seed"), "seed").name == "seed"


def _bar_images(count: int = 4) -> np.ndarray:
    # A vertical bar three pixels wide: a stroke whose width and sharpness are easy to read.
    images = np.zeros((count, 28, 28, 1), dtype=np.float32)
    images[:, 4:24, 12:15] = 1.0
    return images


def _stroke_widths(images: np.ndarray) -> np.ndarray:
    # Pixels of full ink on the bar's middle row.
    return (images[:, 14, :, 0] > 0.5).sum(axis=1)


@pytest.mark.parametrize(
    "layer", [RandomStrokeWidth(probability=1.0), RandomLowResolution(probability=1.0)]
)
def test_the_image_augmentations_change_nothing_at_inference(layer):
    images = _bar_images()
    for training in (False, None):
        np.testing.assert_array_equal(np.asarray(layer(images, training=training)), images)


def test_stroke_width_thickens_or_thins_by_one_pixel_keeping_full_ink():
    augmented = np.asarray(
        RandomStrokeWidth(probability=1.0, seed=0)(_bar_images(32), training=True)
    )
    assert set(_stroke_widths(augmented)) == {2, 4}
    np.testing.assert_allclose(augmented.max(axis=(1, 2, 3)), 1.0)


def test_low_resolution_blurs_every_chosen_image_keeping_full_ink():
    images = _bar_images()
    augmented = np.asarray(RandomLowResolution(probability=1.0, seed=0)(images, training=True))
    assert augmented.shape == images.shape
    np.testing.assert_allclose(augmented.max(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    # Grey fringes where the sharp bar had none.
    assert (((augmented > 0.05) & (augmented < 0.95)).sum(axis=(1, 2, 3)) > 20).all()


@pytest.mark.parametrize("side", [8, 11, 14])
def test_the_low_resolution_matrix_is_the_resize_round_trip(side):
    # The layer blurs with one matrix per axis; the reference resizes the whole image.
    from keras import ops

    images = np.random.default_rng(side).random((3, 28, 28, 1), dtype=np.float32)
    small = ops.image.resize(images, (side, side), interpolation="bilinear", antialias=True)
    expected = np.asarray(ops.image.resize(small, (28, 28), interpolation="bilinear"))
    matrix = low_resolution_matrix(side)
    np.testing.assert_allclose(
        np.einsum("ij,njkc,lk->nilc", matrix, images, matrix), expected, atol=1e-5
    )


@pytest.mark.parametrize("layer_type", [RandomStrokeWidth, RandomLowResolution])
def test_the_image_augmentations_leave_unchosen_images_alone(layer_type):
    images = _bar_images()
    augmented = layer_type(probability=0.0, seed=0)(images, training=True)
    np.testing.assert_array_equal(np.asarray(augmented), images)


def test_unknown_arch_names_the_choices():
    with pytest.raises(
        ValueError, match=r"unknown arch 'lenet'; choose from \['compact', 'seed'\]"
    ):
        build_model("lenet")
