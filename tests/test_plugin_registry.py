"""PluginRegistry (edge_runtime/plugin_registry.py): a plugin is loaded when first looked up, not
when its name is listed, tested for or iterated over. The real daemon's side of it (a run on
the digits example imports no unused source or task) is in test_no_tensorflow.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO
from edge_runtime.plugin_registry import PluginRegistry


def counting_registry() -> tuple[PluginRegistry[str], list[str]]:
    calls: list[str] = []

    def loader(name: str):
        def load() -> str:
            calls.append(name)
            return name.upper()
        return load

    return PluginRegistry({"a": loader("a"), "b": loader("b")}), calls


def test_names_and_membership_load_nothing() -> None:
    registry, calls = counting_registry()
    assert list(registry) == ["a", "b"] and len(registry) == 2
    assert "a" in registry and "c" not in registry
    assert ", ".join(registry) == "a, b"
    view = registry.mapped(str.lower)
    assert "b" in view and list(view) == ["a", "b"]
    assert calls == [] and registry.loaded() == ()


def test_a_lookup_loads_that_plugin_once() -> None:
    registry, calls = counting_registry()
    assert registry["b"] == "B" and registry["b"] == "B"
    assert registry.mapped(str.lower)["b"] == "b"
    assert calls == ["b"] and registry.loaded() == ("b",)
    assert registry.get("c") is None
    with pytest.raises(KeyError):
        registry["c"]  # noqa: B018 - the lookup is the test
    assert dict(registry.items()) == {"a": "A", "b": "B"}  # iterating items loads them all
    assert calls == ["b", "a"]


def test_the_real_registries_import_a_plugin_module_on_lookup() -> None:
    """In a fresh interpreter: importing the registries and loading a config imports no plugin
    module; looking one up imports exactly its module."""
    code = """
import sys
from edge_runtime.sources.registry import SOURCES
from edge_runtime.postprocessing.registry import TASKS
from edge_runtime.app_config import source_options
options = source_options()
assert "video" in options and "detection" in TASKS, (list(options), list(TASKS))
PLUGINS = ("edge_runtime.sources.", "edge_runtime.postprocessing.")
before = sorted(m for m in sys.modules if m.startswith(PLUGINS))
options["video"]
TASKS["detection"]
after = sorted(m for m in sys.modules if m.startswith(PLUGINS))
print(before)
print(sorted(set(after) - set(before)))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    before, added = (eval(line) for line in done.stdout.splitlines())  # noqa: S307 - our own print
    assert "edge_runtime.sources.video" not in before
    assert "edge_runtime.postprocessing.detection.task" not in before
    assert "edge_runtime.sources.video" in added
    assert "edge_runtime.postprocessing.detection.task" in added
    assert not any(m.endswith(("mqtt_source", "serial_source", "command_source")) for m in added)
