"""The import layering, enforced on the source (every `import`, at the top or inside a function): a package
imports only from its own layer or the layers below, and no two packages import each other, directly or round
a loop. An exception would be listed in KNOWN with its reason (there is none); an entry that no longer occurs
fails the test too, so the list only shrinks."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "tunesmith"

LAYERS = [
    {"cli", "serving", "studio", "__main__"},
    {"recipes", "monitoring", "reporting"},
    {"training", "planning", "export", "inference", "config", "tracking"},
    {"tasks", "methods", "generation", "decoding", "evaluation"},
    {"data", "models", "runs", "versions"},
    {
        "errors",
        "registry",
        "files",
        "quiet",
        "units",
        "plugin",
        "processes",
        "hardware",
        "sections",
        "sockets",
        "tunesmith",
    },
]

KNOWN: dict[tuple[str, str], str] = {}
"""(importer, imported): why an import may break the layering. Empty: every import points down or sideways;
an exception ever needed is listed here with its reason."""


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tunesmith"


def imports() -> dict[tuple[str, str], list[str]]:
    """(importer package, imported package) -> where, for every import across packages."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in SRC.rglob("*.py"):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        here = package_of(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "tunesmith":
                    targets = [f"tunesmith.{a.name}" for a in node.names]
                elif node.module.startswith("tunesmith."):
                    targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("tunesmith.")]
            for target in targets:
                if (there := package_of(target)) != here:
                    found[here, there].append(f"{path.relative_to(SRC.parent)}:{node.lineno}")
    return found


def layer(package: str) -> int:
    for depth, members in enumerate(LAYERS):
        if package in members:
            return depth
    raise AssertionError(f"package {package!r} has no layer: add it to LAYERS (and to the README's diagram)")


def test_every_import_points_down_or_sideways():
    upward = [
        f"{a} -> {b} ({', '.join(where[:3])})"
        for (a, b), where in sorted(imports().items())
        if layer(b) < layer(a) and (a, b) not in KNOWN
    ]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in imports():
        if (a, b) not in KNOWN:
            graph[a].add(b)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for package in sorted(graph):
        if package not in state:
            visit(package, [package])


def test_the_known_exceptions_are_still_real():
    stale = sorted(set(KNOWN) - set(imports()))
    assert not stale, f"no longer imported, remove from KNOWN: {stale}"
