"""docs/architecture.md names files and functions (`path/file.py`, `path/file.py::Name.attr`);
each must exist, so the page cannot drift from the code unnoticed. And code and comments
cite only documents inside the repository."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs/architecture.md"
REFERENCE = re.compile(r"`([\w./-]+\.py)(?:::([\w.]+))?`")


def _defined(path: Path) -> set[str]:
    """Dotted names defined in a module: functions, classes, their methods, constants."""
    names: set[str] = set()

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(prefix + child.name)
                if isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.Assign) and not prefix:
                names.update(t.id for t in child.targets if isinstance(t, ast.Name))

    visit(ast.parse(path.read_text()), "")
    return names


def test_every_file_and_function_the_architecture_names_exists():
    references = REFERENCE.findall(DOC.read_text())
    assert len(references) > 40  # the page really names the code it describes
    missing = []
    for file, name in references:
        path = REPO / file
        if not path.is_file():
            missing.append(file)
        elif name and name not in _defined(path):
            missing.append(f"{file}::{name}")
    assert missing == [], f"docs/architecture.md names what does not exist: {missing}"


def test_code_cites_no_document_outside_the_repository():
    found = subprocess.run(
        [
            "git",
            "grep",
            "-nE",
            r"\.\./shared|reference/(realtime|asterisk|live)\.md|(^|[^/\w])design\.md",
            "--",
            "*.py",
            "*.sh",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout
    assert found == "", found


def _structure():
    import importlib.util

    spec = importlib.util.spec_from_file_location("structure", REPO / "scripts/structure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_layers_point_one_way_and_no_package_cycle():
    """From the import graph of every product module (scripts/structure.py), against
    docs/architecture.md's table of layers."""
    structure = _structure()
    found = structure.edges()
    assert len(found) > 50  # the graph really was read: the packages import one another
    assert {("supervisor", "call_worker"), ("call_worker", "records"), ("records", "callbridge")} <= {
        (source, target) for source, target, _ in found
    }
    assert structure.broken_layers(found) == []
    assert structure.cycles(found) == []
    doc = DOC.read_text()
    for package in structure.LAYERS:
        assert f"`{package.replace('.', '/')}/`" in doc  # the table names every package it checks


def test_the_layer_check_catches_an_upward_import_and_a_cycle(tmp_path):
    """The check itself can fail: a base module that imports the supervisor, and the
    product importing a simulator, are both reported, and make a cycle."""
    structure = _structure()
    for package, body in {
        "shm_ring": "",
        "callbridge": "from supervisor import service\n",
        "supervisor": "import callbridge\nfrom simulators import clients\n",
        "simulators": "",
    }.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "mod.py").write_text(body)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    found = structure.edges(tmp_path)
    broken = structure.broken_layers(found)
    assert any("callbridge/mod.py:1: callbridge imports supervisor" in b for b in broken)
    assert any("supervisor imports simulators" in b for b in broken)
    assert structure.cycles(found) == [["callbridge", "supervisor"]]
