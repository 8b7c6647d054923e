#!/usr/bin/env python3
"""The structure's figures, from the import graph of the product's modules (tests/, bench/,
scripts/ and the migrations left out; function-level imports counted, TYPE_CHECKING ones not):

    python scripts/structure.py

prints the package-level import cycles, every import that breaks the layers of
docs/architecture.md ("Layers: who may import whom"), and the longest modules. Exit 1 on a
cycle or a broken layer. tests/test_architecture.py runs the same checks.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# docs/architecture.md's table: a package, its layer. A module imports only from lower layers
# and its own package; the command line (5) may import anything.
LAYERS = {
    "shm_ring": 0,
    "httpd": 0,
    "callbridge": 1,  # the base
    "records": 2,
    "alerts": 3,
    "metrics": 3,
    "webhooks": 3,  # the call webhooks' sender, a helper the supervisor keeps
    "summaries": 3,  # the post-call summarizer, a helper the supervisor keeps
    "call_worker": 3,
    "web": 4,  # the dashboard and /metrics (web/helper.py), under the supervisor that forks it
    "supervisor": 5,
    "callbridge.cli": 6,
}
SIMULATORS = "simulators"  # may import shm_ring alone; only the command line may import it


def product_files(root: Path = ROOT) -> list[str]:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=root, capture_output=True, text=True).stdout
    return [
        f
        for f in listed.split()
        if not f.startswith(("tests/", "bench/", "scripts/")) and "/migrations/" not in f
    ]


def package_of(module: str) -> str:
    """The layer table's package a dotted module belongs to ("" for none of ours)."""
    if module == "callbridge.cli" or module.startswith("callbridge.cli."):
        return "callbridge.cli"
    top = module.split(".")[0]
    return top if top in LAYERS or top == SIMULATORS else ""


def imports_of(path: Path, module: str) -> list[tuple[str, int]]:
    """(imported module, line) for every import in a file, TYPE_CHECKING blocks left out."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(x) for b in node.body for x in ast.walk(b)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, node.lineno))
            found += [(f"{name}.{alias.name}", node.lineno) for alias in node.names]
    return found


def edges(root: Path = ROOT) -> list[tuple[str, str, str]]:
    """(from package, to package, "file:line") for every import between two of our packages."""
    found = []
    for file in product_files(root):
        module = file[:-3].replace("/", ".").removesuffix(".__init__")
        source = package_of(module)
        if not source:
            continue
        for name, line in imports_of(root / file, module):
            target = package_of(name)
            if target and target != source:
                found.append((source, target, f"{file}:{line}"))
    return sorted(set(found))


def broken_layers(found: list[tuple[str, str, str]]) -> list[str]:
    """Every import that points up or sideways in the layer table."""
    broken = []
    for source, target, where in found:
        if source == SIMULATORS:
            ok = target == "shm_ring"
        elif target == SIMULATORS:
            ok = source == "callbridge.cli"
        else:
            ok = source == "callbridge.cli" or LAYERS[target] < LAYERS[source]
        if not ok:
            broken.append(f"{where}: {source} imports {target}")
    return broken


def cycles(found: list[tuple[str, str, str]]) -> list[list[str]]:
    """Package-level import cycles (strongly connected components of more than one package)."""
    graph: dict[str, set[str]] = {}
    for source, target, _ in found:
        graph.setdefault(source, set()).add(target)
    index, low, stack, on, components = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def longest_modules(root: Path = ROOT, count: int = 5) -> list[tuple[int, str]]:
    sizes = [(len((root / f).read_text().splitlines()), f) for f in product_files(root)]
    return sorted(sizes, reverse=True)[:count]


def main() -> int:
    found = edges()
    loops, broken = cycles(found), broken_layers(found)
    for loop in loops:
        print("cycle:", " <-> ".join(loop))
    for line in broken:
        print("layer broken:", line)
    print(f"package-level import cycles: {len(loops)}")
    print(f"imports against the layers: {len(broken)}")
    print("longest modules:", ", ".join(f"{f} ({n} lines)" for n, f in longest_modules()))
    return 1 if loops or broken else 0


if __name__ == "__main__":
    sys.exit(main())
