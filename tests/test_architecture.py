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
