"""The tree keeps its architecture: every module says its job, none is too long, no import cycle, topics built in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"daemon": "alkomd.daemon", "drivers": "alkomd.drivers"}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Modules of this project that `name` imports at module level, TYPE_CHECKING blocks included."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    body = list(tree.body)
    while body:
        node = body.pop(0)
        if isinstance(node, ast.If):  # if TYPE_CHECKING: ... counts too
            body.extend(node.body)
            body.extend(node.orelse)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    is_package = path.name == "__init__.py"
    return {m for m in found if m in MODULES and m != name and not (is_package and m.startswith(name + "."))}


def test_there_is_no_import_cycle() -> None:
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycle = [*stack[stack.index(m) :], m]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_says_its_job_and_is_not_too_long(name: str) -> None:
    path = MODULES[name]
    text = path.read_text()
    doc = ast.get_docstring(ast.parse(text))
    assert doc and doc.strip(), f"{path}: no docstring saying what the module is for"
    assert len(text.splitlines()) <= MAX_LINES, f"{path}: {len(text.splitlines())} lines (split it where natural)"


def test_no_alkomctl_command_lives_at_the_top_of_daemon() -> None:
    assert not list((ROOT / "daemon").glob("cmd_*.py"))


TOPIC_LITERAL = re.compile(r"""f["'][^"']*\{[^}]*\}/(unit|call|device|state|health|probe)\b""")


def test_topics_are_built_only_in_the_contract() -> None:
    """An f-string that builds `<node>/unit/...`, `<node>/call/...` and the like appears only in mqtt/contract/."""
    offenders = []
    for name, path in MODULES.items():
        if name.startswith("alkomd.daemon.mqtt.contract"):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if TOPIC_LITERAL.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "topics built outside the contract:\n" + "\n".join(offenders)


SQL = re.compile(r"\b(SELECT\b.+\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|PRAGMA\s+\w+|CREATE\s+(TABLE|INDEX))\b")


def test_sql_is_written_only_in_the_store() -> None:
    """Every SQL statement of the project (string literals, f-strings included) is in daemon/store/: alkomctl reads a
    database through store/readonly.py, never with SQL of its own."""
    offenders = []
    for folder in ("daemon", "drivers", "console", "config"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.is_relative_to(ROOT / "daemon" / "store"):
                continue
            tree = ast.parse(path.read_text())
            docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                          if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                          and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings and SQL.search(node.value):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:80]!r}")
    assert not offenders, "SQL outside daemon/store/:\n" + "\n".join(offenders)
