"""The 2019 ancestor's request path, kept only as the benchmark baseline.

For every upload it decoded a 28x28 image, built the TF1 graph of its CNN (conv 5x5x32,
pool, conv 5x5x64, pool, fc 1024, fc 10), opened a session and restored the checkpoint,
then ran one prediction. This module does exactly that with ``tf.compat.v1``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

v1 = tf.compat.v1


def _build_graph() -> tuple[tf.Graph, tf.Tensor, tf.Tensor, v1.train.Saver]:
    graph = tf.Graph()
    with graph.as_default():
        pixels = v1.placeholder(tf.float32, [None, 784], name="x")
        net = tf.reshape(pixels, [-1, 28, 28, 1])
        for index, (channels_in, channels_out) in enumerate(((1, 32), (32, 64))):
            kernel = v1.get_variable(f"conv{index}", [5, 5, channels_in, channels_out])
            bias = v1.get_variable(
                f"conv{index}_b", [channels_out], initializer=v1.zeros_initializer()
            )
            net = tf.nn.relu(tf.nn.conv2d(net, kernel, strides=1, padding="SAME") + bias)
            net = tf.nn.max_pool2d(net, ksize=2, strides=2, padding="SAME")
        net = tf.reshape(net, [-1, 7 * 7 * 64])
        for name, size, activation in (("fc1", 1024, tf.nn.relu), ("fc2", 10, tf.identity)):
            weights = v1.get_variable(name, [net.shape[-1], size])
            bias = v1.get_variable(f"{name}_b", [size], initializer=v1.zeros_initializer())
            net = activation(tf.matmul(net, weights) + bias)
        probabilities = tf.nn.softmax(net)
        saver = v1.train.Saver()
    return graph, pixels, probabilities, saver


@dataclass(frozen=True)
class LegacyPredictor:
    checkpoint: str

    @classmethod
    def prepare(cls, directory: Path) -> LegacyPredictor:
        """Write a checkpoint of the 2019 graph (weights do not change its speed)."""
        graph, _, _, saver = _build_graph()
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            checkpoint = saver.save(session, str(directory / "model.ckpt"))
        return cls(checkpoint)

    def predict_png(self, data: bytes) -> int:
        image = Image.open(io.BytesIO(data)).convert("L")
        pixels = np.asarray(image, dtype=np.float32).reshape(1, 784) / 255.0
        graph, inputs, probabilities, saver = _build_graph()
        with v1.Session(graph=graph) as session:
            saver.restore(session, self.checkpoint)
            return int(np.argmax(session.run(probabilities, {inputs: pixels})))
