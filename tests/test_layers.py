"""The daemon's layers hold: read every `import` in edge_runtime/ (function-level ones included,
since a lazy import is still a dependency) and check the rules docs/ARCHITECTURE.md ("Layers")
states. Each failure names the file and line of the offending import."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "edge_runtime"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. edge_runtime.sources.mqtt_source
    target: str  # what it imports, e.g. edge_runtime.transport.mqtt
    where: str  # path:line

    @property
    def source_part(self) -> str:
        return part_of(self.module)

    @property
    def target_part(self) -> str:
        return part_of(self.target)


def part_of(module: str) -> str:
    """The layer a module belongs to: edge_runtime.<first component> (or the root package)."""
    names = module.split(".")
    return ".".join(names[:2])


def module_name(path: Path) -> str:
    names = list(path.relative_to(ROOT).with_suffix("").parts)
    if names[-1] == "__init__":
        names.pop()
    return ".".join(names)


def imports_of(path: Path) -> list[Import]:
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, where) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(Import(module, target, where))
            # `from edge_runtime.x import y` may import the module edge_runtime.x.y
            found += [Import(module, f"{target}.{alias.name}", where) for alias in node.names
                      if (PACKAGE.parent / f"{target}.{alias.name}".replace(".", "/")).is_dir()
                      or (PACKAGE.parent / (f"{target}.{alias.name}".replace(".", "/") + ".py"))
                      .is_file()]
    return found


ALL = [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_of(path)]
INTERNAL = [imp for imp in ALL if imp.target == "edge_runtime"
            or imp.target.startswith("edge_runtime.")]


def offending(imports: list[Import]) -> str:
    return "\n".join(f"  {imp.where}: {imp.module} imports {imp.target}" for imp in imports)


def test_the_import_reader_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    # The rules below are only as good as this reader: a function-level import counts.
    assert any(imp.module == "edge_runtime.cli" and imp.target.startswith("edge_runtime.")
               for imp in INTERNAL)
    lazy = [imp for imp in INTERNAL if imp.where.startswith("edge_runtime/cli.py")]
    tree = ast.parse((PACKAGE / "cli.py").read_text(encoding="utf-8"))
    nested = [node for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef)
              for node in ast.walk(fn) if isinstance(node, ast.ImportFrom)]
    assert nested, "cli.py has function-level imports; the reader must see them"
    assert {f"edge_runtime/cli.py:{node.lineno}" for node in nested} <= {imp.where for imp in lazy}


def test_config_is_the_bottom_floor() -> None:
    """config/ imports nothing else of the daemon (the plugins it needs come in as arguments)."""
    bad = [imp for imp in INTERNAL if imp.source_part == "edge_runtime.config"
           and imp.target_part not in ("edge_runtime.config",)]
    assert not bad, "config/ must not import the rest of the daemon:\n" + offending(bad)


def package_cycle(imports: list[Import]) -> list[str] | None:
    """A cycle between the parts of edge_runtime/, e.g. [config, sources, config], or None."""
    edges: dict[str, set[str]] = {}
    for imp in imports:
        if imp.source_part != imp.target_part and imp.target_part != "edge_runtime":
            edges.setdefault(imp.source_part, set()).add(imp.target_part)
    for start in sorted(edges):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(edges.get(node, ())):
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return None


def test_no_cycle_between_the_daemons_parts() -> None:
    """The parts of edge_runtime/ (config, sources, pipeline, publishing, ...) form no cycle."""
    cycle = package_cycle(INTERNAL)
    if cycle:
        lines = [offending([imp for imp in INTERNAL if imp.source_part == a
                            and imp.target_part == b]) for a, b in zip(cycle, cycle[1:])]
        pytest.fail("import cycle " + " -> ".join(cycle) + ":\n" + "\n".join(lines))


def test_a_cycle_is_detected() -> None:
    # The check can fail: the edge config -> sources that this module forbids, added to the
    # real imports (sources use config's typed builder), is reported as a cycle.
    fake = Import("edge_runtime.config.loader", "edge_runtime.sources.registry", "x.py:1")
    cycle = package_cycle(INTERNAL + [fake])
    assert cycle is not None and "edge_runtime.config" in cycle and "edge_runtime.sources" in cycle


def loaded_by_importing(part: str) -> list[str]:
    """Every module in sys.modules after a fresh interpreter imports each module of `part`."""
    modules = sorted(module_name(p) for p in (PACKAGE / part).glob("*.py"))
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print('\\n'.join(sorted(sys.modules)))")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.split()


def test_importing_config_loads_no_other_part() -> None:
    """The same, for real: importing every config module pulls in nothing else of the daemon."""
    out = [m for m in loaded_by_importing("config") if m.startswith("edge_runtime.")]
    assert "edge_runtime.config.loader" in out
    assert [m for m in out if not m.startswith("edge_runtime.config")] == []


def test_only_the_transport_module_imports_paho() -> None:
    """One MQTT transport (transport/mqtt.py) for publishing and the mqtt source."""
    users = {imp.module for imp in ALL if imp.target == "paho" or imp.target.startswith("paho.")}
    assert users == {"edge_runtime.transport.mqtt"}, offending(
        [imp for imp in ALL if imp.target.startswith("paho") and imp.module not in
         ("edge_runtime.transport.mqtt",)])


@pytest.mark.parametrize("part, forbidden", [
    ("edge_runtime.sources", ("edge_runtime.publishing", "edge_runtime.pipeline")),
    ("edge_runtime.pipeline", ("edge_runtime.publishing", "edge_runtime.transport")),
    ("edge_runtime.messages", ("edge_runtime.",)),
    ("edge_runtime.transport", ("edge_runtime.publishing", "edge_runtime.sources",
                                "edge_runtime.pipeline")),
    ("edge_runtime.supervision", ("edge_runtime.",)),
])
def test_a_part_does_not_reach_into_another(part: str, forbidden: tuple[str, ...]) -> None:
    """An input does not reach into the output side; the pipeline hands results to a sink it
    defines (pipeline/batch.py `BatchSink`), retries with supervision's Backoff and builds
    bodies with messages/; messages/ and supervision/ stand on nothing of the daemon."""
    bad = [imp for imp in INTERNAL if imp.source_part == part
           and imp.target_part != part and imp.target.startswith(forbidden)]
    assert not bad, f"{part} must not import {', '.join(forbidden)}:\n" + offending(bad)


def test_importing_the_pipeline_loads_no_publishing() -> None:
    """Transitively too: every pipeline/ module imported, and no publishing/ module is (paho
    may be: the mqtt source uses the transport)."""
    out = loaded_by_importing("pipeline")
    assert "edge_runtime.pipeline.runner" in out and "edge_runtime.sources.registry" in out
    assert [m for m in out if m.startswith("edge_runtime.publishing")] == []


def layer_rows() -> list[list[str]]:
    """The rows of the picture in docs/ARCHITECTURE.md "Layers", top first, as part names
    (edge_runtime.pipeline, edge_runtime.cli, ...): the names that open each line."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    block = text.split("## Layers", 1)[1].split("```", 2)[1]
    rows = []
    for line in block.splitlines():
        names = []
        for token in line.split():
            if not re.fullmatch(r"\w+(/|\.py)", token):
                break
            names.append("edge_runtime." + token.removesuffix("/").removesuffix(".py"))
        if names:
            rows.append(names)
    return rows


def test_the_layer_picture_holds() -> None:
    """Every part is in the picture, and every import goes to a lower row."""
    rows = layer_rows()
    row_of = {name: index for index, names in enumerate(rows) for name in names}
    parts = {part_of(module_name(path)) for path in PACKAGE.rglob("*.py")} - {"edge_runtime"}
    assert not parts - set(row_of), (
        f"not in the layer picture of docs/ARCHITECTURE.md: {sorted(parts - set(row_of))}; "
        "add each on a row below every part that imports it and above every part it imports")
    assert "edge_runtime.config" == rows[-1][0] and len(rows) > 5
    bad = [imp for imp in INTERNAL if imp.source_part != imp.target_part
           and imp.target_part != "edge_runtime"
           and row_of[imp.target_part] <= row_of[imp.source_part]]
    assert not bad, ("imports up or sideways in the layer picture of docs/ARCHITECTURE.md:\n"
                     + offending(bad))
