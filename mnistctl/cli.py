"""The command line: kubectl's global flags, one subcommand per operation, exit codes.

Every failure ends as one ``error: ...`` line on stderr and an exit code from
mnistctl.errors; a traceback means a bug in mnistctl.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from mnistctl import logs, pin, predict, retrain, scale, status
from mnistctl.errors import EXIT_CODES, EXIT_FAILED, EXIT_OK, CliError
from mnistctl.kube import DEFAULT_REQUEST_TIMEOUT, Target, connect
from mnistctl.output import FORMATS, emit, note
from mnistctl.release import LOG_COMPONENTS, SCALABLE, Release

DEFAULT_RELEASE = "mnist"


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """kubectl's connection flags; given both before and after the subcommand."""

    def default(value):
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("cluster")
    group.add_argument(
        "--kubeconfig", default=default(None), help="kubeconfig file ($KUBECONFIG, ~/.kube/config)"
    )
    group.add_argument(
        "--context", default=default(None), help="kubeconfig context (default: current)"
    )
    group.add_argument(
        "-n",
        "--namespace",
        default=default(None),
        help="namespace (default: the context's, else default)",
    )
    group.add_argument(
        "--release",
        default=default(DEFAULT_RELEASE),
        help="Helm release name (default: %(default)s)",
    )
    group.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default=default("table"),
        help="output format (default: table)",
    )
    group.add_argument(
        "--request-timeout",
        type=float,
        default=default(DEFAULT_REQUEST_TIMEOUT),
        help="seconds for one API request (default: %(default)s)",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnistctl",
        description="Operate a release of the mnist Helm chart through the Kubernetes API.",
        epilog="Exit codes: "
        + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())
        + ". JSON shapes: docs/operations.md.",
    )
    _global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "status", parents=[common], help="components, versions, training runs, HPAs, Cassandra"
    )
    p.add_argument(
        "--live", action="store_true", help="also ask TF Serving and the gateway (service proxy)"
    )

    p = sub.add_parser(
        "scale", parents=[common], help="set replicas of gateway or serving (HPA-aware)"
    )
    p.add_argument("component", choices=SCALABLE)
    p.add_argument("replicas", type=_non_negative)
    p.add_argument(
        "--max", type=_positive, dest="max_replicas", help="with an HPA: also its maxReplicas"
    )
    p.add_argument("--wait", action="store_true", help="wait until the replicas are Ready")
    p.add_argument(
        "--timeout", type=float, default=300.0, help="seconds for --wait (default: %(default)s)"
    )

    p = sub.add_parser(
        "retrain", parents=[common], help="start a training run from the release's template"
    )
    p.add_argument("--epochs", type=_positive, help="epochs for this run (default: the template's)")
    p.add_argument("--wait", action="store_true", help="follow the run to its result")
    p.add_argument(
        "--no-logs", action="store_true", help="with --wait: Job status only, no log stream"
    )
    p.add_argument(
        "--timeout", type=float, default=7200.0, help="seconds for --wait (default: %(default)s)"
    )

    p = sub.add_parser(
        "models", parents=[common], help="model versions with their metrics and serving state"
    )
    p.add_argument(
        "--live", action="store_true", help="also ask TF Serving which versions it has loaded"
    )

    p = sub.add_parser("pin", parents=[common], help="serve exactly one model version (rollback)")
    p.add_argument("version", type=_positive)
    p.add_argument("--force", action="store_true", help="pin a version no training run reported")
    p.add_argument(
        "--wait", action="store_true", help="wait until TF Serving serves only it (service proxy)"
    )
    p.add_argument(
        "--timeout", type=float, default=300.0, help="seconds for --wait (default: %(default)s)"
    )

    p = sub.add_parser(
        "unpin", parents=[common], help="serve what the release's versionPolicy says again"
    )
    p.add_argument(
        "--wait", action="store_true", help="wait until TF Serving has settled (service proxy)"
    )
    p.add_argument(
        "--timeout", type=float, default=300.0, help="seconds for --wait (default: %(default)s)"
    )

    p = sub.add_parser(
        "predict", parents=[common], help="send images to the gateway (service proxy)"
    )
    p.add_argument("files", nargs="+", metavar="FILE")

    p = sub.add_parser("logs", parents=[common], help="logs of a component's pods")
    p.add_argument("component", choices=LOG_COMPONENTS)
    p.add_argument("-f", "--follow", action="store_true", help="stream until the pods end")
    p.add_argument("--tail", type=_non_negative, help="last lines per pod (default: all)")
    p.add_argument("-c", "--container", help="container (default: the component's main one)")
    return parser


def run(args: argparse.Namespace) -> int:
    target = Target(
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespace=args.namespace,
        request_timeout=args.request_timeout,
    )
    release = Release(connect(target), args.release)
    fmt = args.output
    command = args.command
    if command == "status":
        emit(status.gather(release, want_live=args.live), fmt, status.status_table)
    elif command == "models":
        data = status.models_json(status.gather_models(release, want_live=args.live))
        emit(data, fmt, status.models_table)
    elif command == "scale":
        release.require()
        data = scale.scale(
            release,
            args.component,
            args.replicas,
            max_replicas=args.max_replicas,
            wait=args.wait,
            timeout=args.timeout,
        )
        emit(data, fmt, scale.scale_table)
    elif command == "retrain":
        data = retrain.start(release, epochs=args.epochs)
        if not args.wait:
            emit(data, fmt, retrain.retrain_table)
            return EXIT_OK
        note(f"job.batch/{data['job']} created from {data['template']}")
        data["run"] = retrain.wait(
            release, data["job"], timeout=args.timeout, logs=not args.no_logs
        )
        emit(data, fmt, retrain.retrain_table)
        return retrain.result_exit_code(data["run"])
    elif command in ("pin", "unpin"):
        data = (
            pin.pin(release, args.version, force=args.force)
            if command == "pin"
            else pin.unpin(release)
        )
        if args.wait:
            section, _ = status.serving_config(release)
            data["live"] = pin.wait_served(
                release, section["model"] or "mnist", data["pinned"], timeout=args.timeout
            )
        emit(data, fmt, pin.pin_table)
    elif command == "predict":
        emit(predict.predict(release, args.files), fmt, predict.predict_table)
    elif command == "logs":
        logs.show(
            release, args.component, follow=args.follow, tail=args.tail, container=args.container
        )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.request_timeout <= 0:
        parser.error("--request-timeout must be above 0")
    try:
        return run(args)
    except CliError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: still one line, and a code that says failure
        print(f"error: unexpected {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED


def entry() -> None:
    """The console script: ``main`` with a closed pipe ending quietly, like kubectl
    (``mnistctl logs gateway | head``)."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    raise SystemExit(main())
