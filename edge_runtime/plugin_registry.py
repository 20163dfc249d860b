"""A plugin registry that imports a plugin's module only when the plugin is first asked for.

Each registry (sources/registry.py, postprocessing/registry.py) lists every plugin of its kind in
one place, each with a loader that imports the plugin's module (importlib). Names,
`in` and iteration over names import nothing; `registry[name]` imports that one plugin. So a
daemon running an `images` pipeline with a classifier never imports the video, network-camera,
serial, MQTT or command sources, nor the detection decoders (memory and start-up time: goal 5 of
docs/PERFORMANCE.md "Throughput, start-up and memory"). Iterating `.items()` or `.values()`
imports them all (the `schema` command does, and error messages that list the plugins that
could do what was asked).
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, Mapping, TypeVar

T = TypeVar("T")
U = TypeVar("U")


class PluginRegistry(Mapping[str, T], Generic[T]):
    """name -> plugin, loaded on first lookup and kept (loading twice would be harmless: Python
    imports a module once)."""

    def __init__(self, loaders: Mapping[str, Callable[[], T]]) -> None:
        self._loaders = dict(loaders)
        self._loaded: dict[str, T] = {}

    def __getitem__(self, name: str) -> T:
        plugin = self._loaded.get(name)
        if plugin is None:
            plugin = self._loaders[name]()  # KeyError for an unknown name, as a dict
            self._loaded[name] = plugin
        return plugin

    def __contains__(self, name: object) -> bool:  # Mapping's default would load the plugin
        return name in self._loaders

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def loaded(self) -> tuple[str, ...]:
        """The names whose modules have been imported so far (tests, diagnostics)."""
        return tuple(self._loaded)

    def mapped(self, get: Callable[[T], U]) -> Mapping[str, U]:
        """A read-only view: name -> get(plugin), loading each plugin only when looked up."""
        return _Mapped(self, get)


class _Mapped(Mapping[str, U], Generic[T, U]):
    def __init__(self, registry: PluginRegistry[T], get: Callable[[T], U]) -> None:
        self._registry = registry
        self._get = get

    def __getitem__(self, name: str) -> U:
        return self._get(self._registry[name])

    def __contains__(self, name: object) -> bool:
        return name in self._registry

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry)

    def __len__(self) -> int:
        return len(self._registry)
