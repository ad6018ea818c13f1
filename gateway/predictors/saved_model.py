"""The in-process predictor: the newest SavedModel version under MODEL_DIR, in this process.

The one-machine default (no TF Serving). Versions live in ``<model_dir>/<N>/``; like
TF Serving, this serves the highest N that holds a ``saved_model.pb`` and ignores
anything else (``.tmp-*`` directories of an export in progress, stray files). A daemon
thread polls the directory and loads a new version off the request path, then swaps
one reference: requests already running keep the model object they started with.

TensorFlow is imported only when a model is loaded, so importing this module (and the
gateway image, which has no TensorFlow) stays cheap.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gateway import errors
from gateway.concurrency.background import MODEL_CALL_THREAD, MODEL_LOAD_THREAD, LazyDaemon
from gateway.predictors.base import ModelStatus, Prediction, predictions_from_outputs
from mnist_contract import (
    IMAGE_SHAPE,
    INPUT_NAME,
    OUTPUT_DIGIT,
    OUTPUT_PROBABILITIES,
    SIGNATURE_NAME,
    available_versions,
)

if TYPE_CHECKING:
    from gateway.config import Config

log = logging.getLogger(__name__)

# How long a request may wait for the very first model load (importing TensorFlow and
# loading take seconds, more on a busy machine) before it is answered 503.
FIRST_LOAD_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class LoadedVersion:
    """One version, ready to run: its serving signature as a graph in its own session."""

    version: int
    # Keeps the graph and its thread pools alive as long as a request may still call.
    session: Any
    input_shape: Any  # tf.TensorShape of the signature's input
    run: Callable[[np.ndarray], list[np.ndarray]]  # images -> [probabilities, digits]

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Check the shape here: a wrong-rank tensor can abort the whole process inside
        # a TF kernel instead of raising (seen with oneDNN convolutions).
        if not self.input_shape.is_compatible_with(images.shape):
            raise ValueError(
                f"input {INPUT_NAME!r} must have shape {self.input_shape}, got {images.shape}"
            )
        probabilities, digits = self.run(np.asarray(images, dtype=np.float32))
        return probabilities, digits  # the callable returns a list


def load_version(model_dir: Path, version: int, *, threads: int | None = None) -> LoadedVersion:
    """Load ``model_dir/version`` and run it once, so a broken export fails here.

    The serving signature runs as TF Serving runs it: one graph in a session, fed and
    fetched by tensor name, without the eager dispatch of a Python function call. Its
    variables are folded into constants first (they never change while serving), which lets
    TensorFlow's graph optimiser fold each BatchNorm into its convolution. The answers are
    the signature's (the predictor's tests compare them); ``make bench-model`` measures
    the CPU this saves per call against calling the signature eagerly.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2

    # No public API freezes a TF2 function; this is the one the TFLite converter uses.
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    # Referenced until the variables are folded: the signature only holds weak references.
    saved_model = tf.saved_model.load(str(model_dir / str(version)))
    signature = saved_model.signatures[SIGNATURE_NAME]
    frozen = convert_variables_to_constants_v2(signature)
    input_names = [tensor.name.split(":")[0] for tensor in frozen.inputs]
    if input_names != [INPUT_NAME]:
        raise ValueError(f"the signature must take one input {INPUT_NAME!r}, not {input_names}")
    input_tensor = frozen.inputs[0]
    outputs = tf.nest.pack_sequence_as(signature.structured_outputs, frozen.outputs)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(frozen.graph.as_graph_def(), name="")
    config = tf.compat.v1.ConfigProto()
    if threads is not None:
        config.intra_op_parallelism_threads = threads
        config.inter_op_parallelism_threads = threads
    session = tf.compat.v1.Session(graph=graph, config=config)
    # A callable made from CallableOptions runs the session with the arrays as they are.
    # The public make_callable() goes through Session.run() for every call when it has
    # feeds (its fetch handler and feed conversion): 0.2 ms more per call here, on one
    # thread (0.54-0.60 against 0.34-0.40 ms for one image). Keras's TF1 backend makes
    # its callables the same way.
    options = config_pb2.CallableOptions(
        feed=[input_tensor.name],
        fetch=[outputs[OUTPUT_PROBABILITIES].name, outputs[OUTPUT_DIGIT].name],
    )
    run = session._make_callable_from_options(options)
    loaded = LoadedVersion(version, session, input_tensor.shape, run)
    # The warm-up call also moves the first call's graph set-up off the request path.
    probabilities, digits = loaded(np.zeros((1, *IMAGE_SHAPE), np.float32))
    predictions_from_outputs(probabilities, digits, model_name="warmup", model_version="0")
    return loaded


def freeze_long_lived_objects() -> None:
    """Take what is alive now (TensorFlow, the model) out of the garbage collector's view.

    A loaded model leaves about 350,000 long-lived objects that every full collection
    would walk again: 150-500 ms measured here, with every thread of the worker stopped,
    which is what the slowest requests would wait. Frozen objects are skipped. Unfreezing
    first lets this collection free a model that was just swapped out; it pauses the
    worker once per model load, not during serving.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def limit_tensorflow_threads(threads: int) -> None:
    """Size TensorFlow's eager thread pools (loading and freezing a version) for this
    process, before its first operation; ``load_version`` gives each version's session
    the same number.

    Each gunicorn worker is one process with its own model: with one thread each, N
    workers use N cores without the pools of several processes fighting over them, and
    the small convolutions of a micro-batch skip the hand-offs between threads (measured
    here: a 4-image batch takes 0.30 ms of CPU per image on one thread, 0.50 on two).
    """
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        # TensorFlow already ran something in this process (tests, a notebook).
        log.info("TensorFlow is already initialised here; its thread pools stay as they are")


class SavedModelPredictor:
    """Serves the highest version in ``model_dir``; switches when the highest one changes.

    The first predict() or status() starts the watcher thread, which loads the newest
    version at once and then polls. status() never waits for that load (a readiness probe
    must answer in time; it reports "loading"); predict() waits for the first look at
    the directory, so the first request after start-up gets an answer, not a 503.
    """

    def __init__(
        self, model_dir: Path, *, model_name: str, poll_seconds: float, threads: int | None = None
    ) -> None:
        self.model_name = model_name
        self._threads = threads
        self._model_dir = model_dir
        self._poll_seconds = poll_seconds
        self._current: LoadedVersion | None = None
        # Versions that failed to load: skipped until a higher one appears, not retried
        # every poll (the export contract renames complete versions into place).
        self._broken: set[int] = set()
        self._first_look_done = threading.Event()
        self._watcher = LazyDaemon("model-watcher", self._watch)

    @classmethod
    def from_config(cls, config: Config) -> SavedModelPredictor:
        return cls(
            config.model_dir,
            model_name=config.model_name,
            poll_seconds=config.model_poll_seconds,
            threads=config.model_threads,
        )

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        self._watcher.ensure_running()
        self._first_look_done.wait(FIRST_LOAD_WAIT_SECONDS)
        model = self._current  # one read: a swap during this call does not affect it
        if model is None:
            raise errors.PredictorUnavailable(self._why_no_model())
        try:
            probabilities, digits = MODEL_CALL_THREAD.run(model, batch)
            return predictions_from_outputs(
                probabilities, digits, model_name=self.model_name, model_version=str(model.version)
            )
        except (ValueError, TypeError) as error:
            # Wrong input shape or dtype: a bug in the caller, not something to retry.
            raise errors.PredictorFailed(f"model version {model.version}: {error}") from error

    def status(self) -> ModelStatus:
        self._watcher.ensure_running()
        model = self._current
        if model is None:
            return ModelStatus(False, self.model_name, None, self._why_no_model())
        return ModelStatus(True, self.model_name, str(model.version), f"serving {self._model_dir}")

    def close(self) -> None:
        self._watcher.stop()

    def _why_no_model(self) -> str:
        if not self._first_look_done.is_set():
            return f"loading the newest version in MODEL_DIR ({self._model_dir})"
        return f"no model version in MODEL_DIR ({self._model_dir})"

    def _watch(self, stop: threading.Event) -> None:
        # Imported here, on the thread this watcher runs on, before any load runs off the
        # event loop: under gevent, TensorFlow's first import fails on a native thread
        # (h5py asks platform.processor(), which starts a subprocess, and gevent watches
        # child processes only from the main thread's loop).
        import tensorflow  # noqa: F401

        if self._threads is not None:
            limit_tensorflow_threads(self._threads)
        self._refresh()
        self._first_look_done.set()
        while not stop.wait(self._poll_seconds):
            self._refresh()

    def _refresh(self) -> None:
        candidates = [v for v in available_versions(self._model_dir) if v not in self._broken]
        wanted = candidates[-1] if candidates else None
        current = self._current.version if self._current is not None else None
        if wanted is None or wanted == current:
            return
        try:
            loaded = MODEL_LOAD_THREAD.run(
                functools.partial(load_version, threads=self._threads), self._model_dir, wanted
            )
        except Exception:
            log.exception("model version %s failed to load; still serving %s", wanted, current)
            self._broken.add(wanted)
            return
        self._current = loaded
        freeze_long_lived_objects()
        log.info("serving model %s version %s (was %s)", self.model_name, wanted, current)
