"""`edge-runtime` command line: run, check, info."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from edge_runtime import __version__
from edge_runtime.app_config import load_config
from edge_runtime.config.typed import ConfigError
from edge_runtime.logging_setup import configure_logging
from edge_runtime.model.delegates import load_model
from edge_runtime.model.runtime import RuntimeUnavailable, select_runtime
from edge_runtime.model.tflite_model import ModelLoadError

logger = logging.getLogger("edge_runtime")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-runtime",
        description="Run TFLite models on camera or sensor input and publish results over MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"edge-runtime {__version__}")
    parser.add_argument("--log-level", default=None, help="debug, info, warning or error "
                        "(default: the config's [logging] level, else info)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the daemon in the foreground (logs to stderr)")
    run.add_argument("--config", "-c", required=True, help="the TOML config file")

    check = commands.add_parser("check", help="validate the config and load every model")
    check.add_argument("--config", "-c", required=True, help="the TOML config file")

    remove = commands.add_parser(
        "ha-remove", help="remove the daemon's Home Assistant entities (empty retained discovery)")
    remove.add_argument("--config", "-c", required=True, help="the TOML config file")

    info = commands.add_parser("info", help="show a model's tensors, quantization and metadata")
    info.add_argument("model", help="a .tflite file")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.add_argument("--runtime", default="auto", help="auto, ai-edge-litert, tflite-runtime")
    info.add_argument("--delegate", default=None, help="edgetpu or a delegate library path")

    schema = commands.add_parser("schema", help="print the JSON Schema of a message "
                                 "(result and state are assembled from the task plugins)")
    schema.add_argument("message", choices=("result", "state", "event"))

    bench = commands.add_parser("bench", help="invoke latency (p50/p99) per interpreter thread count")
    bench.add_argument("model", help="a .tflite file")
    bench.add_argument("--threads", default=None,
                       help="N, N..M or N,M,... (default: 1..number of CPUs)")
    bench.add_argument("--runs", type=int, default=50, help="timed invokes per thread count")
    bench.add_argument("--runtime", default="auto", help="auto, ai-edge-litert, tflite-runtime")
    bench.add_argument("--delegate", default=None, help="edgetpu or a delegate library path")
    bench.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level or "info")
    handlers = {"run": cmd_run, "check": cmd_check, "info": cmd_info, "bench": cmd_bench,
                "ha-remove": cmd_ha_remove, "schema": cmd_schema}
    return handlers[args.command](args)


def cmd_schema(args: argparse.Namespace) -> int:
    from edge_runtime.payload_schemas import SCHEMAS_BY_MESSAGE, as_text

    sys.stdout.write(as_text(SCHEMAS_BY_MESSAGE[args.message]()))
    return 0


def _load(args: argparse.Namespace) -> Any:
    from edge_runtime.daemon import prepare

    app = _load_config(args)
    return app, prepare(app)


def _load_config(args: argparse.Namespace) -> Any:
    app = load_config(args.config)
    if args.log_level is None:
        configure_logging(app.log_level)
    return app


def cmd_check(args: argparse.Namespace) -> int:
    try:
        app, parts = _load(args)
        _check_sources(app.file, parts)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for part in parts:
        model = part.model
        print(f"pipeline {part.config.name}: {part.config.source.type} -> {model.path.name} "
              f"({model.runtime.describe()}, {part.delegate}, task {part.task}) -> "
              f"{app.mqtt.topic_prefix}/{app.device.id}/{part.config.name}/result")
        if part.cascade is not None:
            for line in part.cascade.describe():
                print(f"  {line}")
    print(f"{args.config}: OK")
    return EXIT_OK


def _check_sources(file: str, parts: Sequence[Any]) -> None:
    """`check` opens each file source (images, video, csv) and reads its first frame: a path that
    matches nothing, a CSV without the configured columns or a file with no frame at all is an
    error here, not retries at run time (where a file that appears later is still picked up).
    Live sources are not opened (a camera or a command may be in use by the running service):
    they are asked what they can tell without opening (`preflight`: a program not installed)."""
    from edge_runtime.sources.base import EndOfStream, SourceError

    for part in parts:
        key = f"pipelines[{part.config.index}].source"
        if part.source.live:
            try:
                problem = part.make_source().preflight()
            except SourceError as exc:
                raise ConfigError(file, key, str(exc)) from exc
            if problem is not None:
                raise ConfigError(file, f"{key}.{problem[0]}", problem[1])
            continue
        source = part.make_source()
        try:
            source.open()
            source.read()
        except SourceError as exc:
            raise ConfigError(file, key, str(exc)) from exc
        except EndOfStream:
            raise ConfigError(file, key, "ends before its first frame") from None
        finally:
            source.close()


def cmd_ha_remove(args: argparse.Namespace) -> int:
    """Clear the retained discovery (Home Assistant removes the device's entities) and the
    retained states, snapshots and control states of the configured pipelines."""
    from edge_runtime.config.integration import HomeAssistantConfig
    from edge_runtime.homeassistant.service import removal_messages
    from edge_runtime.publishing.oneshot import OneShotError, publish_retained
    from edge_runtime.messages.topics import Topics

    try:
        app = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    topics = removal_messages(app.homeassistant or HomeAssistantConfig(), app.device.id,
                              Topics(app.mqtt.topic_prefix, app.device.id),
                              [p.name for p in app.pipelines])
    try:
        publish_retained(app.mqtt, app.mqtt.client_id_for(app.device.id) + "-ha-remove",
                         [(topic, b"") for topic in topics])
    except OneShotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"removed the Home Assistant device {topics[0]} and {len(topics) - 1} retained "
          "state topic(s)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from edge_runtime.daemon import Daemon, prepare
    from edge_runtime.publishing.outbox import OutboxInUse, claim, configured_outbox_path
    from edge_runtime.supervision.cpus import keep_off

    try:
        app = _load_config(args)
        # Before the models load, the outbox opens or the broker hears from us: one daemon per
        # outbox, held until this process ends.
        owner = claim(configured_outbox_path(app))
    except ConfigError as exc:
        logger.error("%s", exc)
        return EXIT_CONFIG
    except OutboxInUse as exc:
        logger.error("%s", exc)
        return EXIT_FAILURE
    with owner:
        # Before any model loads or thread starts, so that all of them inherit it: the daemon
        # keeps off the CPUs pipelines have to themselves (model.cpus, supervision/cpus.py).
        keep_off({cpu for pipeline in app.pipelines for cpu in pipeline.model.cpus})
        try:
            parts = prepare(app)
        except ConfigError as exc:
            logger.error("%s", exc)
            return EXIT_CONFIG
        return _run(Daemon(app, parts))


def _run(daemon: Any) -> int:
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        logger.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return daemon.run(stop)


def cmd_info(args: argparse.Namespace) -> int:
    try:
        loaded = load_model(args.model, select_runtime(args.runtime), delegate=args.delegate)
        model = loaded.model
    except (ModelLoadError, RuntimeUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    doc = model.describe()
    doc["delegate"] = loaded.delegate
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    print(f"model:    {doc['path']} ({doc['size_bytes']} bytes, sha256 {doc['sha256'][:16]}...)")
    print(f"runtime:  {doc['runtime']}")
    print(f"delegate: {doc['delegate']}")
    for kind in ("inputs", "outputs"):
        for tensor in doc[kind]:
            quant = tensor.get("quantization")
            q = f" scale={quant['scale']:.6g} zero_point={quant['zero_point']}" if quant else ""
            print(f"{kind[:-1]:<9} {tensor['name']}: {tensor['shape']} {tensor['dtype']}{q}")
    meta = doc["metadata"]
    if meta is None:
        print("metadata: none (set preprocess/postprocess in the config)")
    else:
        print("metadata:")
        for key, value in meta.items():
            text = json.dumps(value)
            print(f"  {key}: {text if len(text) <= 200 else text[:197] + '...'}")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    import os

    from edge_runtime.bench import ThreadSpecError, format_report, parse_threads, run_bench

    try:
        counts = parse_threads(args.threads or f"1..{os.cpu_count() or 1}")
        if args.runs < 1:
            raise ThreadSpecError("--runs must be at least 1")
        report = run_bench(Path(args.model), select_runtime(args.runtime), counts, args.runs,
                           args.delegate)
    except (ThreadSpecError, ModelLoadError, RuntimeUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return EXIT_OK
