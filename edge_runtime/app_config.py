"""The config file read with the plugins it may name: where config/ and the registries meet.

config/ is the bottom floor and knows no plugin (`config.loader` takes the source types as an
argument); this module, one level up, hands it the source registry's. Everything that reads a
config file (`run`, `check`, tests, benches) calls `load_config` here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from edge_runtime.config import loader
from edge_runtime.config.schema import AppConfig
from edge_runtime.sources.registry import SOURCES


def source_options() -> Mapping[str, type]:
    """Each source `type` and its options dataclass, from the source registry (a source's module
    is imported only when the config names its type)."""
    return SOURCES.mapped(lambda plugin: plugin.options)


def load_config(path: Path | str) -> AppConfig:
    """The validated AppConfig, or ConfigError naming the file and the key path."""
    return loader.load_config(path, source_options())
