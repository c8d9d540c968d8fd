"""
The package's layers point one way: no import cycle inside ``shared_kd``, and no import of the
package inside a function (the usual way of hiding one). Read from the source with ``ast``.

Importing ``shared_kd.a.b`` runs ``shared_kd/__init__.py`` and ``shared_kd/a/__init__.py``
first, so an import of a module is an edge to it and to each package above it (except the
importer's own packages, which are already loading).
"""

import ast
import os
from typing import Dict, List, Set

import pytest

# Found from the source tree, not by importing it: a cycle may make the import itself fail.
PACKAGE_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "projects", "SharedKD", "shared_kd"
)


def module_files(package_dir: str) -> Dict[str, str]:
    """Dotted module name -> file, for every ``.py`` under ``package_dir``."""
    root = os.path.dirname(package_dir)
    files = {}
    for folder, _, names in os.walk(package_dir):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                files[dotted.removesuffix(".__init__")] = path
    return files


def _imported(module: str, is_package: bool, node, known) -> List[str]:
    """The package's modules an Import/ImportFrom node names (absolute, dotted)."""
    top = module.split(".")[0]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == top]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        name = ".".join(base + ([node.module] if node.module else []))
    else:
        name = node.module or ""
    if name.split(".")[0] != top:
        return []
    return [name] + [f"{name}.{a.name}" for a in node.names if f"{name}.{a.name}" in known]


def import_graph(package_dir: str):
    """(module -> modules it imports at load time, [(module, line) of imports in functions])."""
    files = module_files(package_dir)
    graph: Dict[str, Set[str]] = {}
    in_functions = []
    for module, path in files.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        is_package = path.endswith("__init__.py")
        edges = set()
        functions = [
            n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        inside = {id(n) for fn in functions for n in ast.walk(fn)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            names = _imported(module, is_package, node, files)
            if names and id(node) in inside:
                in_functions.append((module, node.lineno))
            for name in names:
                parts = name.split(".")
                for i in range(1, len(parts) + 1):
                    target = ".".join(parts[:i])
                    own_package = module == target or module.startswith(target + ".")
                    if target in files and not own_package:
                        edges.add(target)
        graph[module] = edges
    return graph, in_functions


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle as a list of modules (first == last), or [] when there is none."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(v):
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return path[path.index(w) :] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        state[v] = 2
        path.pop()
        return []

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return []


@pytest.mark.slow
def test_no_import_cycle_in_shared_kd():
    graph, _ = import_graph(PACKAGE_DIR)
    assert "shared_kd.losses.base" in graph and "shared_kd.layers.outputs" in graph
    assert find_cycle(graph) == [], " -> ".join(find_cycle(graph))


def test_no_package_import_inside_a_function():
    _, in_functions = import_graph(PACKAGE_DIR)
    assert in_functions == [], in_functions


def test_the_layers_are_leaves():
    graph, _ = import_graph(PACKAGE_DIR)
    leaves = {"shared_kd.checkpoint", "shared_kd.names", "shared_kd.utils", "shared_kd.utils.io"}
    for module in [m for m in graph if m.startswith("shared_kd.layers")]:
        outside = {m for m in graph[module] if not m.startswith("shared_kd.layers")}
        assert outside <= leaves, (module, outside)
    for module in [m for m in graph if m.startswith("shared_kd.losses")]:
        assert not any(
            m.startswith(("shared_kd.modeling", "shared_kd.config", "shared_kd.engine"))
            for m in graph[module]
        ), (module, graph[module])


def _write(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


def test_the_check_finds_a_cycle_through_a_package_init(tmp_path):
    # The shape of the cycle this package had: a loss imports a helper that lives in the
    # modeling package, whose __init__ imports the distiller, which imports the losses.
    pkg = tmp_path / "pkg"
    files = {
        "pkg/__init__.py": "",
        "pkg/losses/__init__.py": "from .base import Loss\n",
        "pkg/losses/base.py": "from ..modeling.outputs import Outputs\n",
        "pkg/modeling/__init__.py": "from .distiller import Distiller\n",
        "pkg/modeling/outputs.py": "Outputs = object\n",
        "pkg/modeling/distiller.py": "from ..losses import Loss\n",
    }
    _write(tmp_path, files)
    graph, _ = import_graph(str(pkg))
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] and {"pkg.losses", "pkg.modeling"} <= set(cycle), cycle
    # the fix: the helper in a leaf package
    os.remove(pkg / "modeling" / "outputs.py")
    _write(tmp_path, {"pkg/layers/__init__.py": "", "pkg/layers/outputs.py": "Outputs = object\n"})
    _write(tmp_path, {"pkg/losses/base.py": "from ..layers.outputs import Outputs\n"})
    graph, _ = import_graph(str(pkg))
    assert find_cycle(graph) == []
    # an import inside a function is reported
    _write(tmp_path, {"pkg/config.py": "def f():\n    from .losses import Loss\n"})
    assert import_graph(str(pkg))[1] == [("pkg.config", 2)]
