"""The package's shape: one module names the state directory, and no two modules import each
other (directly or round a longer loop), counting imports inside functions too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import ftci

PACKAGE = Path(ftci.__file__).parent
STATE_MODULE = PACKAGE / "state.py"


def package_files() -> Iterator[Path]:
    """Every file under ftci/: sources, templates, schemas, data. Only `__pycache__` is left
    out: bytecode compiled from these sources (or from modules since deleted) is not source."""
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.relative_to(PACKAGE).parts:
            yield path


def test_only_ftci_state_spells_the_state_directory() -> None:
    spelled = [str(path.relative_to(PACKAGE.parent)) for path in package_files()
               if path != STATE_MODULE and b".ftci" in path.read_bytes()]
    assert spelled == [], ("these files spell `.ftci`; build paths with ftci.state (state_dir, "
                           "splits_dir, ...) and help texts with state.display(...)")


# --- the import graph --------------------------------------------------------------------------


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_statements(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement anywhere in `tree` (functions, classes, try blocks), except the
    body of `if TYPE_CHECKING:` (never run; its `else:` branch is)."""
    if isinstance(tree, ast.Import | ast.ImportFrom):
        yield tree
    for name, value in ast.iter_fields(tree):
        if isinstance(tree, ast.If) and name == "body" and _is_type_checking(tree.test):
            continue
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, ast.AST):
                yield from import_statements(child)


def imported_modules(statement: ast.Import | ast.ImportFrom, module: str, is_package: bool
                     ) -> Iterator[str]:
    """The dotted names a statement imports: `from pkg import sub` imports `pkg` and, when it is
    a module, `pkg.sub`; relative imports are resolved against `module`."""
    if isinstance(statement, ast.Import):
        yield from (alias.name for alias in statement.names)
        return
    base = statement.module or ""
    if statement.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (statement.level - 1)]
        base = ".".join(package + ([base] if base else []))
    yield base
    yield from (f"{base}.{alias.name}" for alias in statement.names)


def import_graph() -> dict[str, set[str]]:
    modules = module_names()

    def owner(name: str) -> str | None:  # the deepest ftci module a dotted name lies in
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for statement in import_statements(tree):
            for target in imported_modules(statement, name, path.name == "__init__.py"):
                found = owner(target) if target.split(".")[0] == "ftci" else None
                if found is not None and found != name:
                    graph[name].add(found)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_the_cycle_finder_sees_imports_inside_functions_and_skips_type_checking() -> None:
    """The checker itself, on a made-up package: a function-level import closes a loop, a
    TYPE_CHECKING import does not, relative imports resolve."""
    code = {
        "ftci.a": "def f():\n    from ftci.b import g\n",
        "ftci.b": "from . import c\n",
        "ftci.c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ftci.b\n"
                  "else:\n    from .a import f\n",
        "ftci.d": "if TYPE_CHECKING:\n    from ftci import a\n",
    }
    graph = {name: set() for name in code}
    for name, text in code.items():
        for statement in import_statements(ast.parse(text)):
            graph[name].update(target for target in imported_modules(statement, name, False)
                               if target in code and target != name)
    assert graph == {"ftci.a": {"ftci.b"}, "ftci.b": {"ftci.c"}, "ftci.c": {"ftci.a"},
                     "ftci.d": set()}
    assert import_cycles(graph) == [["ftci.a", "ftci.b", "ftci.c"]]
    graph["ftci.c"] = set()
    assert import_cycles(graph) == []


def test_no_import_cycle_among_ftci_modules() -> None:
    cycles = import_cycles(import_graph())
    assert cycles == [], "modules that import each other (inside functions too): " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles)
