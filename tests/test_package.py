"""The package as a whole: its import graph, and what it exports."""

import ast
from pathlib import Path

import socklab

PACKAGE = Path(socklab.__file__).resolve().parent


def imports_of(path: Path) -> set[str]:
    """The socklab modules `path` imports, anywhere in it (also inside functions and
    ``if TYPE_CHECKING:``): a cycle through any of them is a cycle."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found |= {alias.name for alias in node.names}
            elif node.module and node.module.startswith("socklab."):
                found.add(node.module.split(".")[1])
            elif node.module == "socklab":  # "from socklab import _x" imports module _x; a name, the package
                found |= {alias.name if (PACKAGE / f"{alias.name}.py").exists() else "__init__"
                          for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("socklab.")}
            found |= {"__init__" for a in node.names if a.name == "socklab"}
    return found


def graph() -> dict[str, set[str]]:
    modules = {p.stem: p for p in PACKAGE.glob("*.py")}
    return {name: imports_of(path) & set(modules) - {name} for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every module from which an import path leads back to itself (depth first)."""
    found = []

    def visit(node, path):
        for nxt in sorted(edges.get(node, ())):
            if nxt == path[0]:
                found.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # report each cycle once, from its least module
                visit(nxt, [*path, nxt])

    for start in sorted(edges):
        visit(start, [start])
    return found


def test_the_package_has_no_import_cycle():
    assert cycles(graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"_a": {"_b"}, "_b": {"_c"}, "_c": {"_a"}, "_d": {"_a"}}) == [["_a", "_b", "_c", "_a"]]


def test_the_import_graph_sees_imports_inside_functions_and_type_checking_blocks():
    assert "_ladder" in imports_of(PACKAGE / "_run.py")
    assert "_observed" in imports_of(PACKAGE / "_ladder.py")
