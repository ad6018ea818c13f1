"""``tensorflow_model_server``'s command line, for the stand-in (the image's
/usr/bin/tensorflow_model_server; ``python -m serving_standin`` runs the same).

Flags are parsed as TF Serving parses them: ``--name=value`` only (a bool flag may also be
given bare), no abbreviations. Every flag of :data:`FLAGS` is honoured or, where the table
says so, accepted without effect; a TF Serving flag the stand-in does not implement, and
any other argument, is an error naming it (exit status 2).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving_standin.config import (
    ConfigError,
    ModelSpec,
    read_batching_parameters,
    read_model_config,
    read_monitoring_config,
    single_model,
)

PROGRAM = "tensorflow_model_server"
EXIT_USAGE = 2
EXIT_CONFIG = 1
log = logging.getLogger("serving_standin")

HEADER = f"""\
usage: {PROGRAM} --model_config_file=FILE | --model_base_path=DIR [flags]

A STAND-IN for TensorFlow Serving's model server, NOT tensorflow_model_server itself: it
serves TF Serving's REST API (status, metadata, predict; version labels; Prometheus
metrics) for real SavedModels with TensorFlow, where the official image cannot be used.
It does NOT speak gRPC: --port is only listened on, and connections to it are closed at
once (enough for a TCP probe, nothing for a gRPC client). No server-side batching.

Flags, with TF Serving's names and defaults (--name=value; a bool flag may stand alone):
"""


@dataclass(frozen=True)
class Flag:
    name: str
    kind: type  # int, bool or str
    default: Any
    help: str


FLAGS: tuple[Flag, ...] = (
    Flag("port", int, 8500, "Port listened on in place of the gRPC API (no gRPC is spoken)."),
    Flag("rest_api_port", int, 0, "Port of the HTTP/REST API (required: the only API served)."),
    Flag("model_config_file", str, "", "ModelServerConfig in text format: the models to serve."),
    Flag(
        "model_config_file_poll_wait_seconds",
        int,
        0,
        "Seconds between re-reads of --model_config_file (0: read once).",
    ),
    Flag("model_name", str, "default", "Name of the model (without --model_config_file)."),
    Flag("model_base_path", str, "", "Base path of the model (without --model_config_file)."),
    Flag(
        "file_system_poll_wait_seconds",
        int,
        1,
        "Seconds between scans of base paths for versions (0: once at start).",
    ),
    Flag(
        "monitoring_config_file",
        str,
        "",
        "MonitoringConfig in text format: serves Prometheus metrics on the REST port.",
    ),
    Flag("enable_model_warmup", bool, True, "Replay assets.extra warm-up requests on load."),
    Flag("num_request_iterations_for_warmup", int, 1, "Times each warm-up request is run."),
    Flag(
        "allow_version_labels_for_unavailable_models",
        bool,
        False,
        "Let version_labels name versions that are not AVAILABLE yet.",
    ),
    Flag("saved_model_tags", str, "serve", "Comma-separated tags of the MetaGraph to load."),
    Flag("tensorflow_session_parallelism", int, 0, "Threads of TensorFlow's op pools (0: auto)."),
    Flag("tensorflow_intra_op_parallelism", int, 0, "Threads within one op (0: auto)."),
    Flag("tensorflow_inter_op_parallelism", int, 0, "Ops run in parallel (0: auto)."),
    Flag(
        "enable_batching",
        bool,
        False,
        "Accepted; the stand-in does not batch across requests (the gateway batches).",
    ),
    Flag(
        "batching_parameters_file",
        str,
        "",
        "BatchingParameters in text format: read and checked, not applied.",
    ),
    Flag("rest_api_num_threads", int, 0, "Accepted; one thread serves each request."),
    Flag("flush_filesystem_caches", bool, True, "Accepted; nothing to flush."),
    Flag("version", bool, False, "Print the version and exit."),
)
_BY_NAME = {flag.name: flag for flag in FLAGS}
# TF Serving flags that change what a real server does and that the stand-in cannot do.
NOT_IMPLEMENTED = frozenset(
    {
        "grpc_socket_path", "grpc_channel_arguments", "grpc_max_threads", "ssl_config_file",
        "use_alts_credentials", "rest_api_timeout_in_ms", "rest_api_enable_cors_support",
        "enable_per_model_batching_parameters", "platform_config_file",
        "tensorflow_session_config_file", "per_process_gpu_memory_fraction",
        "num_load_threads", "num_unload_threads", "max_num_load_retries",
        "load_retry_interval_micros", "prefer_tflite_model", "num_tflite_pools",
        "num_tflite_interpreters_per_pool", "enable_signature_method_name_check",
        "xla_cpu_compilation_enabled", "enable_profiler", "thread_pool_factory_config_file",
        "mixed_precision", "skip_initialize_tpu", "enable_grpc_healthcheck_service",
        "remove_unused_fields_from_bundle_metagraph", "enable_serialization_as_tensor_content",
    }
)  # fmt: skip


class UsageError(ValueError):
    pass


def usage() -> str:
    lines = [HEADER]
    for flag in FLAGS:
        default = str(flag.default).lower() if flag.kind is bool else flag.default
        lines += [f"  --{flag.name}={default}", f"      {flag.help}"]
    return "\n".join(lines) + "\n"


def parse_flags(argv: Sequence[str]) -> dict[str, Any]:
    """Flag values by name, every flag present (defaults filled in); ``help`` True when
    asked for."""
    values: dict[str, Any] = {flag.name: flag.default for flag in FLAGS}
    values["help"] = False
    for argument in argv:
        if argument in ("--help", "-h", "--helpfull"):
            values["help"] = True
            continue
        if not argument.startswith("--"):
            raise UsageError(f"unknown argument: {argument}")
        name, has_value, text = argument[2:].partition("=")
        flag = _BY_NAME.get(name)
        if flag is None:
            if name in NOT_IMPLEMENTED:
                raise UsageError(f"--{name}: a TF Serving flag the stand-in does not implement")
            raise UsageError(f"unknown argument: {argument}")
        values[name] = _flag_value(flag, text if has_value else None, argument)
    return values


def _flag_value(flag: Flag, text: str | None, argument: str) -> Any:
    if flag.kind is bool:
        if text is None:
            return True
        if text.lower() in ("true", "1"):
            return True
        if text.lower() in ("false", "0"):
            return False
        raise UsageError(f"{argument}: not a boolean (true, false, 1 or 0)")
    if text is None:
        raise UsageError(f"{argument}: needs a value, as --{flag.name}=VALUE")
    if flag.kind is int:
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"{argument}: not an integer") from None
        if not -(2**31) <= value < 2**31:
            raise UsageError(f"{argument}: out of range for a 32-bit integer")
        return value
    return text


def main(argv: Sequence[str] | None = None) -> int:
    try:
        flags = parse_flags(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        print(f"{PROGRAM} (stand-in): {error}\nTry --help.", file=sys.stderr)
        return EXIT_USAGE
    if flags["help"]:
        print(usage(), end="")
        return 0
    if flags["version"]:
        from importlib.metadata import version

        print(
            "TensorFlow ModelServer: STAND-IN (serving_standin, REST only)\n"
            f"TensorFlow Library: {version('tensorflow')}"
        )
        return 0
    try:
        check_flags(flags)
    except UsageError as error:
        print(f"{PROGRAM} (stand-in): {error}\nTry --help.", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s serving-standin %(message)s",
        stream=sys.stderr,
    )
    log.info(
        "TF Serving STAND-IN (not tensorflow_model_server): REST API on port %d; port %d is "
        "listened on only, no gRPC",
        flags["rest_api_port"],
        flags["port"],
    )
    try:
        return serve(flags)
    except ConfigError as error:
        log.error("%s", error)
        return EXIT_CONFIG
    except OSError as error:
        # A port already taken, a base path that cannot be read.
        log.error("%s", error)
        return EXIT_CONFIG


def check_flags(flags: dict[str, Any]) -> None:
    if not flags["model_config_file"] and not flags["model_base_path"]:
        raise UsageError("give --model_config_file or --model_base_path")
    if flags["rest_api_port"] == 0:
        raise UsageError("--rest_api_port is 0: the stand-in serves only the REST API")
    if flags["rest_api_port"] == flags["port"]:
        raise UsageError("--rest_api_port cannot be same as --port")
    if flags["batching_parameters_file"] and not flags["enable_batching"]:
        raise UsageError("You supplied --batching_parameters_file without --enable_batching")


def serve(flags: dict[str, Any], stop: threading.Event | None = None) -> int:
    """Run the server until SIGTERM or SIGINT (or ``stop`` is set); ``flags`` as
    :func:`parse_flags` returns them."""
    load_models = _model_source(flags)
    models = load_models()
    for model in models:
        log.info("Model %s", model)
    monitoring_path = None
    if flags["monitoring_config_file"]:
        monitoring_path = read_monitoring_config(flags["monitoring_config_file"])
        log.info("Prometheus metrics: %s", monitoring_path or "not enabled by the config")
    if flags["enable_batching"]:
        parameters = {}
        if flags["batching_parameters_file"]:
            parameters = read_batching_parameters(flags["batching_parameters_file"])
        log.info(
            "--enable_batching accepted, not applied (the stand-in runs each request as it "
            "comes): %s",
            parameters or "default parameters",
        )
    _configure_threads(flags)

    from serving_standin.server import ServerOptions, TFServingStandIn

    options = ServerOptions(
        host="0.0.0.0",
        grpc_port=flags["port"],
        monitoring_path=monitoring_path,
        warmup=flags["enable_model_warmup"],
        warmup_iterations=max(1, flags["num_request_iterations_for_warmup"]),
        saved_model_tags=tuple(t for t in flags["saved_model_tags"].split(",") if t),
        allow_labels_for_unavailable=flags["allow_version_labels_for_unavailable_models"],
        freeze_gc=True,
    )
    server = TFServingStandIn(
        models=models,
        port=flags["rest_api_port"],
        poll_seconds=flags["file_system_poll_wait_seconds"],
        options=options,
    )
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        # As PID 1 of a container the process gets no default SIGTERM action: handle it.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    with server:
        log.info("Exporting HTTP/REST API at 0.0.0.0:%d", server.port)
        poll = flags["model_config_file_poll_wait_seconds"]
        if flags["model_config_file"] and poll > 0:
            threading.Thread(
                target=_poll_model_config,
                args=(server, load_models, models, poll, stop),
                daemon=True,
                name="model-config-poll",
            ).start()
        stop.wait()
        log.info("Stopping")
    return 0


def _model_source(flags: dict[str, Any]) -> Callable[[], list[ModelSpec]]:
    if flags["model_config_file"]:
        if flags["model_base_path"]:
            log.warning("--model_config_file is set: --model_name, --model_base_path are ignored")
        path = Path(flags["model_config_file"])
        return lambda: read_model_config(path)
    return lambda: single_model(flags["model_name"], flags["model_base_path"])


def _poll_model_config(
    server: Any,
    load_models: Callable[[], list[ModelSpec]],
    current: list[ModelSpec],
    seconds: int,
    stop: threading.Event,
) -> None:
    """TF Serving's PollFilesystemAndReloadConfig: re-read the file; apply it if it
    changed; on an error, log it and keep serving the previous config."""
    while not stop.wait(seconds):
        try:
            models = load_models()
            if models == current:
                continue
            log.info("Model config changed: %s", "; ".join(map(str, models)))
            server.set_models(models)
        except ConfigError as error:
            log.error("Failed to reload the model config; keeping the previous one: %s", error)
            continue
        current = models


def _configure_threads(flags: dict[str, Any]) -> None:
    intra = flags["tensorflow_intra_op_parallelism"] or flags["tensorflow_session_parallelism"]
    inter = flags["tensorflow_inter_op_parallelism"] or flags["tensorflow_session_parallelism"]
    if not (intra or inter):
        return
    import tensorflow as tf

    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
