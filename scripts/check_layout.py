"""A package's layout rules, checked from its source with ast (nothing is imported):

- import cycles among its modules, from the imports at module level (``if TYPE_CHECKING:``
  blocks included), and again counting the imports inside functions too (the ones that only
  dodge a cycle hide it from the first count);
- the imports inside functions, listed (each should say why it is lazy);
- modules over ``--max-module`` lines and functions over ``--max-function`` lines.

    python scripts/check_layout.py captioning        # exit status 1 when a rule is broken
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

Graph = dict[str, set[str]]  # module -> the package's modules it imports


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The package's modules an import statement runs: each submodule it names, else the
    package whose names it takes."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in modules}
    if node.level:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    named = {f"{base}.{a.name}" for a in node.names} & modules
    return named | ({base} & modules if len(named) < len(node.names) else set())


def _cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check(package: Path, *, max_module: int, max_function: int) -> tuple[Graph, Graph, list[str], list[str]]:
    """(top-level import graph, graph with in-function imports too, lazy imports, size problems)."""
    files = {_module_name(f, package): f for f in sorted(package.rglob("*.py"))}
    top_graph: Graph = {m: set() for m in files}
    full_graph: Graph = {m: set() for m in files}
    lazy, too_big = [], []
    for module, path in files.items():
        source = path.read_text()
        name = path.relative_to(package.parent)
        if len(source.splitlines()) > max_module:
            too_big.append(f"module {name}: {len(source.splitlines())} lines")
        tree = ast.parse(source)
        top = {id(n) for n in tree.body} | {id(m) for n in tree.body if isinstance(n, ast.If) for m in n.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > max_function:
                    too_big.append(f"function {name}:{node.lineno} {node.name}: {length} lines")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                targets = _imported(node, module, path.name == "__init__.py", set(files)) - {module}
                full_graph[module] |= targets
                if id(node) in top:
                    top_graph[module] |= targets
                else:
                    lazy.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    return top_graph, full_graph, lazy, too_big


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("package", type=Path, help="the package folder, e.g. captioning")
    p.add_argument("--max-module", type=int, default=400, help="lines per module (default: %(default)s)")
    p.add_argument("--max-function", type=int, default=80, help="lines per function (default: %(default)s)")
    args = p.parse_args(argv)
    top, full, lazy, too_big = check(args.package.resolve(), max_module=args.max_module,
                                     max_function=args.max_function)
    cycles, hidden = _cycles(top), _cycles(full)
    print(f"{len(top)} modules")
    for title, rows in (("import cycles (module-level imports)", [", ".join(c) for c in cycles]),
                        ("import cycles counting the imports inside functions too", [", ".join(c) for c in hidden]),
                        ("imports inside functions", lazy),
                        (f"modules over {args.max_module} lines, functions over {args.max_function}", too_big)):
        print(f"{title}: {len(rows)}")
        for row in rows:
            print(f"  {row}")
    return 1 if cycles or hidden or too_big else 0


if __name__ == "__main__":
    sys.exit(main())
