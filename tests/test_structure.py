"""The package layout's rules: each package imports only what its `__init__.py` says.

Every package of ours states, in its `__init__.py` docstring, a line
`Imports: a, b.c, ...`: the packages (or modules) of ours its modules may
import besides its own. This test reads every module's imports (also those
inside functions) and holds them to that line, so the arrows in
docs/architecture.md cannot drift. Command modules (`python -m trainer.X`,
`beam_jobs/X.py`) may import anything below them; nothing imports a command.
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
OURS = ("schemas", "media", "backbone", "demo_data", "beam_jobs", "trainer")
# Modules users run: they may import anything of ours except another command.
COMMANDS = {"trainer.task", "trainer.tune", "trainer.predict", "trainer.timeline",
            "trainer.data_service", "beam_jobs.make_records", "beam_jobs.embed_records",
            "beam_jobs.predict_plays", "beam_jobs.find_plays"}
MAX_LINES = 450


def _modules() -> Iterator[Tuple[str, pathlib.Path]]:
    for top in OURS:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, path


def _packages() -> Dict[str, pathlib.Path]:
    return {name: path for name, path in _modules() if path.name == "__init__.py"}


def _package_of(module: str, packages: Dict[str, pathlib.Path]) -> str:
    """The innermost package of ours holding `module` (a package is its own)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in packages:
            return ".".join(parts[:end])
    raise AssertionError(f"{module} is in no package")


def _imports(path: pathlib.Path) -> Set[str]:
    """The modules of ours that `path` imports (`from a.b import c` -> a.b.c when that is a module)."""
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (ROOT / (candidate.replace(".", "/") + ".py")).exists() or (
                    ROOT / candidate.replace(".", "/") / "__init__.py").exists()
                found.add(candidate if is_module else node.module)
    return {name for name in found if name.split(".")[0] in OURS}


def _allowed(package_path: pathlib.Path) -> List[str]:
    doc = ast.get_docstring(ast.parse(package_path.read_text())) or ""
    match = re.search(r"^Imports: (.*)$", doc, re.M)
    assert match, f"{package_path} has no 'Imports: ...' line in its docstring"
    text = match.group(1).split("(")[0].strip().rstrip(".")
    return [] if text.startswith("nothing") else [item.strip() for item in text.split(",")]


def _covered(name: str, allowed: List[str]) -> bool:
    return any(name == rule or name.startswith(rule + ".") for rule in allowed)


def test_every_package_states_what_it_holds_and_imports():
    for name, path in _packages().items():
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and doc.splitlines()[0].strip(), f"{name}: no docstring saying what it holds"
        _allowed(path)


def test_imports_follow_each_packages_rule():
    packages = _packages()
    errors = []
    for module, path in _modules():
        package = _package_of(module, packages)
        allowed = [package] + _allowed(packages[package])
        for name in sorted(_imports(path)):
            if name in COMMANDS:
                errors.append(f"{module} imports the command {name}")
            elif module not in COMMANDS and not _covered(name, allowed):
                errors.append(f"{module} imports {name}; {package} may import {allowed[1:]}")
    assert not errors, "\n".join(errors)


def test_package_rules_have_no_cycle():
    packages = _packages()
    graph = {name: {_package_of(rule, packages) for rule in _allowed(path)}
             for name, path in packages.items()}
    # A package's rule may name its parent's siblings but never, through any chain, itself.
    for start in graph:
        seen, todo = set(), [dep for dep in graph[start] if dep != start]
        while todo:
            dep = todo.pop()
            if dep in seen:
                continue
            seen.add(dep)
            assert dep != start, f"the import rules of {start} come back to it"
            todo.extend(d for d in graph.get(dep, ()) if d != dep)


@pytest.mark.parametrize("module,path", list(_modules()), ids=lambda v: str(v))
def test_no_module_is_too_long(module, path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES})"


def test_every_package_ships():
    """setup.py installs, and the Dockerfile copies, every top-level package of ours."""
    setup = (ROOT / "setup.py").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    for top in OURS:
        assert f'"{top}", "{top}.*"' in setup, f"setup.py does not install {top}"
        assert f"COPY {top} {top}" in dockerfile, f"the Dockerfile does not copy {top}"
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert on_disk == set(OURS), f"top-level packages {sorted(on_disk)} vs OURS {sorted(OURS)}"
