"""docs/ARCHITECTURE.md's module tables ("Modules", "Converter") against the tree.

Every module of the daemon and the converter is named in a table row, and every file or folder a
row names exists. A row names a path in backticks; later names in the same cell without a folder
(`` `publishing/latest.py`, `listeners.py` ``) are in the first one's folder. A registered source
or task plugin needs no row of its own (the registry rows say so): adding a plugin stays one
module plus one registry line.
"""

from __future__ import annotations

import re
from pathlib import Path

from edge_runtime.postprocessing.registry import TASKS
from edge_runtime.sources.registry import SOURCES

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("edge_runtime", "converters")
ROOTS = ("edge_runtime/", "converters/", "bench/", "examples/", "deploy/", "tests/")


def named_in_tables(text: str) -> set[str]:
    """The paths named in the first cell of every table row."""
    named: set[str] = set()
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        folder = ""
        for item in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if "/" in item:
                named.add(item)
                folder = item if item.endswith("/") else item.rsplit("/", 1)[0] + "/"
            elif folder:
                named.add(folder + item)
    return named


def modules() -> set[str]:
    return {str(path.relative_to(ROOT)) for package in PACKAGES
            for path in (ROOT / package).rglob("*.py") if path.name != "__init__.py"}


def plugin_modules() -> set[str]:
    """The modules of the registered source and task plugins."""
    classes = [plugin.create for plugin in SOURCES.values()] + [
        plugin.options for plugin in SOURCES.values()] + [task.options for task in TASKS.values()]
    return {cls.__module__.replace(".", "/") + ".py" for cls in classes}


def test_the_helpers_read_rows_and_registries() -> None:
    """The parsing the other tests rely on: folder shorthand, and plugins found by module."""
    rows = ("| `a/b/x.py`, `y.py` | job |\n| `c/` | folder |\n| field | `d/e.py` in the second cell |\n"
            "plain text naming `f/g.py`\n")
    assert named_in_tables(rows) == {"a/b/x.py", "a/b/y.py", "c/"}
    plugins = plugin_modules()
    assert "edge_runtime/sources/csv_source.py" in plugins
    assert "edge_runtime/postprocessing/regression.py" in plugins
    assert "edge_runtime/pipeline/runner.py" not in plugins


def test_every_module_is_in_the_module_tables() -> None:
    named = named_in_tables((ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    missing = sorted(modules() - named - plugin_modules())
    assert not missing, ("modules without a row in docs/ARCHITECTURE.md's module tables "
                         f"(\"Modules\", \"Converter\"): {missing}")


def test_every_path_in_the_module_tables_exists() -> None:
    named = named_in_tables((ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    gone = sorted(path for path in named
                  if path.startswith(ROOTS) and "<" not in path and not (ROOT / path).exists())
    assert not gone, f"docs/ARCHITECTURE.md names files that do not exist: {gone}"
