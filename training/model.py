"""The network architectures, each with the optimizer and epoch budget it was tuned for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from mnist_contract import IMAGE_SHAPE, NUM_CLASSES

# Keras defaults to 0.99; 0.9 lets the inference statistics converge within the ~100 steps
# of a quick run (with 0.99 a quick model scores ~30% at test time despite ~90% in training).
_BATCHNORM_MOMENTUM = 0.9


@dataclass(frozen=True)
class Architecture:
    """How to build one network and how it is meant to be trained."""

    build: Callable[[], keras.Model]
    # Applied to training batches only, in front of the network; the exported model never
    # contains it (its random-state variables would also not belong in a SavedModel).
    augmentation: Callable[[], keras.Layer] | None
    # Called with the total number of optimizer steps, so schedules can span the whole run.
    optimizer: Callable[[int], keras.optimizers.Optimizer]
    default_epochs: int
    description: str


def _augmentation() -> keras.Sequential:
    # Small shifts, rotations and zooms: handwriting varies this way, and the gateway's
    # preprocessing centres digits only approximately. Pens, scanners and small canvases
    # also vary the stroke width and the resolution, which MNIST alone hardly shows.
    return keras.Sequential(
        [
            RandomStrokeWidth(probability=0.2),
            RandomLowResolution(probability=0.2),
            # Up to about 11 degrees: the factor is a fraction of a full turn.
            layers.RandomRotation(0.03, fill_mode="constant"),
            layers.RandomZoom(0.1, fill_mode="constant"),
            layers.RandomTranslation(0.1, 0.1, fill_mode="constant"),
        ],
        name="augmentation",
    )


class RandomStrokeWidth(layers.Layer):
    """Thickens or thins the strokes of a random ``probability`` of the images, half each.

    A 2x2 max-pool with stride 1 is a grey-scale dilation by one pixel, and the same on the
    negated image an erosion. Identity at inference.
    """

    def __init__(self, probability: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.probability = probability
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        thick = _dilate(images)
        thin = _rescale_peak_to_one(-_dilate(-images))
        draw = keras.random.uniform(_per_image(images), seed=self.seed_generator)
        changed = ops.where(draw < self.probability / 2, thick, thin)
        return ops.where(draw < self.probability, changed, images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "probability": self.probability, "seed": self.seed}


class RandomLowResolution(layers.Layer):
    """Blurs a random ``probability`` of the images as if drawn at a low resolution.

    Each chosen image is shrunk to one of ``sides`` pixels square (averaging, like a coarse
    sensor or canvas) and enlarged back bilinearly, as the gateway enlarges small uploads.
    Identity at inference.
    """

    def __init__(
        self,
        probability: float,
        sides: tuple[int, ...] = (8, 9, 10, 11, 12, 13, 14),
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.probability = probability
        self.sides = tuple(sides)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # Resizing is separable and linear, so shrinking and enlarging one axis is one
        # 28x28 matrix per side. Two small matmuls per image replace resizing the whole batch
        # to every side (that took 23 ms of a ~100 ms training step on 2 cores).
        self.round_trips = np.stack([low_resolution_matrix(side) for side in self.sides])

    def call(self, images, training=None):
        if not training:
            return images
        picked = keras.random.randint(
            (ops.shape(images)[0],), 0, len(self.sides), seed=self.seed_generator
        )
        round_trip = ops.take(ops.convert_to_tensor(self.round_trips), picked, axis=0)
        blurred = ops.einsum("nij,njkc,nlk->nilc", round_trip, images, round_trip)
        chosen = keras.random.uniform(_per_image(images), seed=self.seed_generator)
        return ops.where(chosen < self.probability, _rescale_peak_to_one(blurred), images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "probability": self.probability,
            "sides": self.sides,
            "seed": self.seed,
        }


def low_resolution_matrix(side: int, size: int = IMAGE_SHAPE[0]) -> np.ndarray:
    """``size`` x ``size`` matrix ``M`` with ``M @ column`` = the column shrunk to ``side``
    pixels (antialiased bilinear, i.e. averaging) and enlarged back bilinearly."""
    return _resize_matrix(side, size, antialias=False) @ _resize_matrix(size, side, antialias=True)


def _resize_matrix(n_from: int, n_to: int, *, antialias: bool) -> np.ndarray:
    # Resize each unit vector as a one-pixel-wide image: column j is the image of e_j.
    basis = np.eye(n_from, dtype=np.float32).reshape(n_from, n_from, 1, 1)
    resized = ops.image.resize(basis, (n_to, 1), interpolation="bilinear", antialias=antialias)
    return np.asarray(resized).reshape(n_from, n_to).T


def _per_image(images) -> tuple:
    # One random draw per image, broadcast over its pixels.
    return (ops.shape(images)[0], 1, 1, 1)


def _dilate(images):
    return ops.max_pool(images, pool_size=2, strides=1, padding="same")


def _rescale_peak_to_one(images):
    # Thinning and blurring dim the strokes, but the gateway stretches every upload's
    # contrast so that stroke cores are full ink: the model should not learn "dim = odd".
    peak = ops.max(images, axis=(1, 2, 3), keepdims=True)
    return images / ops.maximum(peak, 1e-6)


def _conv_bn(filters: int) -> list[layers.Layer]:
    # No conv bias: the BatchNorm shift that follows makes it redundant.
    return [
        layers.Conv2D(filters, 3, use_bias=False),
        layers.BatchNormalization(momentum=_BATCHNORM_MOMENTUM),
        layers.ReLU(),
    ]


def _compact() -> keras.Model:
    """Two blocks of two unpadded 3x3 convs (32, 64) and a 128-unit head, all with BatchNorm.

    About 0.2M parameters. Measured on full MNIST: a single 5x5 conv in place of the first
    pair trains ~40% faster but scores 0.05 points lower, and without the hidden dense layer
    the network underfits the augmented data (99.3% after 12 epochs).
    """
    return keras.Sequential(
        [
            keras.Input(shape=IMAGE_SHAPE),
            *_conv_bn(32),
            *_conv_bn(32),
            layers.MaxPooling2D(),
            *_conv_bn(64),
            *_conv_bn(64),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(128, use_bias=False),
            layers.BatchNormalization(momentum=_BATCHNORM_MOMENTUM),
            layers.ReLU(),
            layers.Dropout(0.4),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="compact",
    )


def _compact_optimizer(total_steps: int) -> keras.optimizers.Optimizer:
    # One cosine decay with a short linear warm-up: fast early progress, and a small final
    # learning rate that settles the BatchNorm statistics and the last few tenths of a percent.
    warmup_steps = max(1, total_steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=1e-4,
        decay_steps=max(1, total_steps - warmup_steps),
        warmup_target=3e-3,
        warmup_steps=warmup_steps,
        alpha=0.01,
    )
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=1e-4)


def _seed() -> keras.Model:
    """The 2019 project's network (TensorFlow's "Deep MNIST for experts")."""
    return keras.Sequential(
        [
            keras.Input(shape=IMAGE_SHAPE),
            layers.Conv2D(32, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(1024, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="seed",
    )


ARCHITECTURES: dict[str, Architecture] = {
    "compact": Architecture(
        build=_compact,
        augmentation=_augmentation,
        optimizer=_compact_optimizer,
        default_epochs=15,
        description="small BatchNorm CNN with augmentation, AdamW, warm-up + cosine schedule",
    ),
    "seed": Architecture(
        build=_seed,
        augmentation=None,
        optimizer=lambda _total_steps: keras.optimizers.Adam(learning_rate=1e-4),
        default_epochs=20,
        description="the 2019 architecture: 5x5 convs 32/64, fc 1024, dropout 0.5, Adam 1e-4",
    ),
}
DEFAULT_ARCH = "compact"


def build_model(arch: str = DEFAULT_ARCH) -> keras.Model:
    """An untrained network of the named architecture (see ARCHITECTURES)."""
    return architecture(arch).build()


def architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown arch {name!r}; choose from {sorted(ARCHITECTURES)}") from None


def with_augmentation(network: keras.Model, arch: str) -> keras.Model:
    """The model to fit: ``network`` behind the architecture's augmentation, if it has one.

    Both share the network's layers, so fitting this trains ``network`` itself.
    """
    augmentation = architecture(arch).augmentation
    if augmentation is None:
        return network
    return keras.Sequential(
        [keras.Input(shape=IMAGE_SHAPE), augmentation(), network], name=f"{network.name}_training"
    )
