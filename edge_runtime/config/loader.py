"""Read the TOML config file into an AppConfig, or raise ConfigError naming file and key.

config/ is the bottom floor: it imports no other part of the daemon. The plugins a file may
name (source types and their options dataclasses) come in as an argument; `app_config.py`, one
level up, passes the registry's.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Mapping

from edge_runtime.config.moved import check_moved
from edge_runtime.config.schema import (
    AppConfig,
    DeviceConfig,
    GateConfig,
    LoggingConfig,
    MqttConfig,
    ModelConfig,
    OutboxConfig,
    PipelineConfig,
    PreprocessConfig,
    PublishConfig,
    RetryConfig,
    StatsConfig,
    available_cpus,
    topic_safe,
)
from edge_runtime.config.cascade import parse_escalate, parse_model_spec, parse_stages
from edge_runtime.config.typed import ConfigError, Context, build, control_character
from edge_runtime.config.integration import parse_homeassistant, parse_pipeline_objects

TOP_LEVEL_KEYS = ("device", "mqtt", "outbox", "stats", "retry", "logging", "homeassistant",
                  "pipelines")
PIPELINE_KEYS = ("name", "source", "model", "preprocess", "postprocess", "gate", "publish",
                 "stages", "escalate", "tracker", "zones", "snapshot")


SourceOptions = Mapping[str, type]  # source `type` -> its options dataclass


def load_config(path: Path | str, sources: SourceOptions) -> AppConfig:
    shown = str(path)
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(shown, "", "no such file") from None
    except OSError as exc:
        raise ConfigError(shown, "", f"cannot read ({exc.strerror})") from None
    try:
        doc = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(shown, "", f"not valid TOML: {exc}") from None
    return parse_config(doc, Context(shown, path.resolve().parent), sources)


def parse_config(doc: dict[str, Any], ctx: Context, sources: SourceOptions) -> AppConfig:
    for key in doc:
        if key not in TOP_LEVEL_KEYS:
            raise ctx.error(key, f"unknown section (expected one of: {', '.join(TOP_LEVEL_KEYS)})")
    check_moved(doc, ctx)
    device = build(DeviceConfig, doc.get("device", {}), "device", ctx)
    mqtt = build(MqttConfig, doc.get("mqtt", {}), "mqtt", ctx)
    _check_files(mqtt, ctx)
    outbox = build(OutboxConfig, doc.get("outbox", {}), "outbox", ctx)
    stats = build(StatsConfig, doc.get("stats", {}), "stats", ctx)
    retry = build(RetryConfig, doc.get("retry", {}), "retry", ctx)
    logging_config = build(LoggingConfig, doc.get("logging", {}), "logging", ctx)

    tables = doc.get("pipelines")
    if not isinstance(tables, list) or not tables:
        raise ctx.error("pipelines", "at least one [[pipelines]] table is required")
    pipelines = []
    names: set[str] = set()
    for index, table in enumerate(tables):
        pipeline = _pipeline(table, index, ctx, sources)
        if pipeline.name in names:
            raise ctx.error(f"pipelines[{index}].name", f"duplicate pipeline name {pipeline.name!r}")
        names.add(pipeline.name)
        pipelines.append(pipeline)
    _check_dedicated_cpus(pipelines, ctx)
    homeassistant = parse_homeassistant(doc["homeassistant"], ctx) if "homeassistant" in doc \
        else None
    return AppConfig(ctx.file, ctx.base_dir, device, mqtt, tuple(pipelines), logging=logging_config,
                     outbox=outbox, stats=stats, retry=retry, homeassistant=homeassistant)


def _check_dedicated_cpus(pipelines: list[PipelineConfig], ctx: Context) -> None:
    """`model.cpus`: the pipelines' own model only (a stage or escalation model runs on the
    publish thread), and at least one CPU left for the daemon's other threads."""
    dedicated: set[int] = set()
    for pipeline in pipelines:
        key = f"pipelines[{pipeline.index}]"
        models = [(f"{key}.stages[{i}].model", s.model) for i, s in enumerate(pipeline.stages)]
        if pipeline.escalate is not None:
            models.append((f"{key}.escalate.model", pipeline.escalate.model))
        for model_key, model in models:
            if model.cpus:
                raise ctx.error(f"{model_key}.cpus", "only the pipeline's own [pipelines.model] "
                                "takes cpus (this model runs on the pipeline's publish thread)")
        dedicated.update(pipeline.model.cpus)
        if pipeline.model.cpus and dedicated >= available_cpus():
            raise ctx.error(f"{key}.model.cpus",
                            f"the pipelines' cpus ({sorted(dedicated)}) leave no CPU for the "
                            f"daemon's other threads (available: {sorted(available_cpus())})")


def _check_files(mqtt: MqttConfig, ctx: Context) -> None:
    candidates = {"mqtt.password_file": mqtt.password_file}
    if mqtt.tls is not None:
        candidates.update({f"mqtt.tls.{k}": getattr(mqtt.tls, k)
                           for k in ("ca_file", "cert_file", "key_file")})
    for key, file in candidates.items():
        if file is not None and not file.is_file():
            raise ctx.error(key, f"no such file '{file}'")
    if mqtt.password_file is not None and not mqtt.username:
        raise ctx.error("mqtt.password_file", "set mqtt.username too")


def _pipeline(table: Any, index: int, ctx: Context, sources: SourceOptions) -> PipelineConfig:
    key = f"pipelines[{index}]"
    if not isinstance(table, dict):
        raise ctx.error(key, "expected a table")
    for name in table:
        if name not in PIPELINE_KEYS:
            raise ctx.error(f"{key}.{name}", f"unknown key (expected one of: {', '.join(PIPELINE_KEYS)})")
    if "name" not in table:
        raise ctx.error(f"{key}.name", "missing required key")
    name = table["name"]
    if not isinstance(name, str):
        raise ctx.error(f"{key}.name", "expected a string")
    problem = topic_safe(name)
    if control_character(name) is not None:
        problem = f"{name!r} contains the control character {control_character(name)!r}"
    if problem:
        raise ctx.error(f"{key}.name", problem)

    source_table = table.get("source")
    if not isinstance(source_table, dict):
        raise ctx.error(f"{key}.source", "missing [pipelines.source] table")
    source_type = source_table.get("type")
    if source_type not in sources:
        raise ctx.error(f"{key}.source.type",
                        f"unknown source type {source_type!r} "
                        f"(expected one of: {', '.join(sources)})")
    source = build(sources[source_type], source_table, f"{key}.source", ctx)

    model, preprocess, postprocess = parse_model_spec(table, key, ctx, ModelConfig,
                                                      PreprocessConfig, "pipelines")
    gate = build(GateConfig, table.get("gate", {}), f"{key}.gate", ctx)
    publish = build(PublishConfig, table.get("publish", {}), f"{key}.publish", ctx)
    stages = parse_stages(table.get("stages", []), f"{key}.stages", ctx, ModelConfig,
                          PreprocessConfig, topic_safe)
    escalate = None
    if "escalate" in table:
        escalate = parse_escalate(table["escalate"], f"{key}.escalate", ctx, ModelConfig,
                                  PreprocessConfig)
    return PipelineConfig(name, source, model, preprocess, dict(postprocess), index, gate, publish,
                          stages, escalate, parse_pipeline_objects(table, key, ctx))
