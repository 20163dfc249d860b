"""`[[pipelines.stages]]` and `[pipelines.escalate]`: more than one model per pipeline.

A stage runs a second model on crops of the pipeline's detections; escalation runs a bigger model
on the same input when the pipeline's own model is unsure. Both carry a model spec with the same
keys as a pipeline's (`model`, `preprocess`, `postprocess`), so one model file serves a pipeline
and a stage alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from edge_runtime.config.typed import Context, at_least, build

STAGE_KEYS = ("name", "on", "max_per_frame", "batch", "model", "preprocess", "postprocess",
              "crop")
ESCALATE_KEYS = ("below", "model", "preprocess", "postprocess")


def _fraction(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else f"must be between 0 and 1, got {value!r}"


@dataclass(frozen=True)
class CropConfig:
    """How a detection box becomes a stage's input image (pipeline/crops.py)."""

    # Added on each side, as a fraction of the box's width and height (0.1: 20% larger crop).
    margin: float = field(default=0.1, metadata=at_least(0.0))
    # Grow the shorter side to a square around the box center before the margin is added.
    square: bool = False
    # A crop reaching past the frame edge: "clip" keeps the part inside the frame (the crop gets
    # smaller and may change shape), "pad" keeps its size and fills the outside with black.
    edge: Literal["clip", "pad"] = "clip"
    # Boxes smaller than this many frame pixels (either side) are not cropped.
    min_size: int = field(default=4, metadata=at_least(1))


@dataclass(frozen=True)
class StageConfig:
    """One `[[pipelines.stages]]` table, validated; model spec checked when the pipeline is built."""

    name: str
    model: Any  # schema.ModelConfig (typed by the caller: no import cycle)
    on: tuple[str, ...] = ()  # detector labels that trigger the stage; empty: every detection
    max_per_frame: int = 8  # the highest-scoring detections first
    preprocess: Any = None  # schema.PreprocessConfig
    postprocess: dict[str, Any] = field(default_factory=dict)
    crop: CropConfig = field(default_factory=CropConfig)
    index: int = 0  # position in the pipeline's list, for error messages
    # The crops in one invoke when the model takes a batch (false: one invoke per crop).
    batch: bool = True


@dataclass(frozen=True)
class EscalateConfig:
    """`[pipelines.escalate]`: the bigger model and when to ask it."""

    below: float  # escalate when the pipeline model's top score is under this
    model: Any  # schema.ModelConfig
    preprocess: Any = None  # schema.PreprocessConfig
    postprocess: dict[str, Any] = field(default_factory=dict)


def parse_stages(value: Any, key: str, ctx: Context, model_cls: type, preprocess_cls: type,
                 name_check: Any) -> tuple[StageConfig, ...]:
    """`[[pipelines.stages]]` tables into StageConfigs; errors name `pipelines[i].stages[j]...`."""
    if not isinstance(value, list):
        raise ctx.error(key, "expected [[pipelines.stages]] tables (a list of tables)")
    stages = []
    names: set[str] = set()
    for index, table in enumerate(value):
        at = f"{key}[{index}]"
        if not isinstance(table, dict):
            raise ctx.error(at, "expected a table")
        _known(table, STAGE_KEYS, at, ctx)
        name = table.get("name")
        if not isinstance(name, str):
            raise ctx.error(f"{at}.name", "missing required key" if name is None
                            else "expected a string")
        problem = name_check(name)
        if problem:
            raise ctx.error(f"{at}.name", problem)
        if name in names:
            raise ctx.error(f"{at}.name", f"duplicate stage name {name!r}")
        names.add(name)
        on = table.get("on", [])
        on = [on] if isinstance(on, str) else on
        if not isinstance(on, list) or not all(isinstance(v, str) for v in on):
            raise ctx.error(f"{at}.on", "expected a list of labels")
        max_per_frame = table.get("max_per_frame", 8)
        if not isinstance(max_per_frame, int) or isinstance(max_per_frame, bool) \
                or max_per_frame < 1:
            raise ctx.error(f"{at}.max_per_frame", f"must be an integer >= 1, got {max_per_frame!r}")
        batch = table.get("batch", True)
        if not isinstance(batch, bool):
            raise ctx.error(f"{at}.batch", f"expected true or false, got {batch!r}")
        model, preprocess, postprocess = parse_model_spec(table, at, ctx, model_cls,
                                                          preprocess_cls, "pipelines.stages")
        crop = build(CropConfig, table.get("crop", {}), f"{at}.crop", ctx)
        stages.append(StageConfig(name, model, tuple(on), max_per_frame, preprocess, postprocess,
                                  crop, index, batch))
    return tuple(stages)


def parse_escalate(table: Any, key: str, ctx: Context, model_cls: type,
                   preprocess_cls: type) -> EscalateConfig:
    if not isinstance(table, dict):
        raise ctx.error(key, "expected a table")
    _known(table, ESCALATE_KEYS, key, ctx)
    below = table.get("below")
    if below is None:
        raise ctx.error(f"{key}.below", "missing required key")
    if not isinstance(below, (int, float)) or isinstance(below, bool) or _fraction(below):
        raise ctx.error(f"{key}.below", f"must be a number between 0 and 1, got {below!r}")
    model, preprocess, postprocess = parse_model_spec(table, key, ctx, model_cls, preprocess_cls,
                                                      "pipelines.escalate")
    return EscalateConfig(float(below), model, preprocess, postprocess)


def _known(table: dict[str, Any], keys: tuple[str, ...], key: str, ctx: Context) -> None:
    for name in table:
        if name not in keys:
            raise ctx.error(f"{key}.{name}", f"unknown key (expected one of: {', '.join(keys)})")


def parse_model_spec(table: dict[str, Any], key: str, ctx: Context, model_cls: type,
                     preprocess_cls: type, section: str) -> tuple[Any, Any, dict[str, Any]]:
    """(model, preprocess, postprocess) of a pipeline, stage or escalation table; `section`
    names the table in messages, e.g. `pipelines.stages`."""
    if "model" not in table:
        raise ctx.error(f"{key}.model", f"missing [{section}.model] table")
    model = build(model_cls, table["model"], f"{key}.model", ctx)
    if not model.path.is_file():
        raise ctx.error(f"{key}.model.path", f"no such file '{model.path}'")
    preprocess = build(preprocess_cls, table.get("preprocess", {}), f"{key}.preprocess", ctx)
    postprocess = table.get("postprocess", {})
    if not isinstance(postprocess, dict):
        raise ctx.error(f"{key}.postprocess", "expected a table")
    return model, preprocess, dict(postprocess)
