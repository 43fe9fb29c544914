"""The layout rules of ARCHITECTURE.md, checked on the source: short files, no import cycles, plain layers, cli on top.

Each checker is a plain function, first shown to catch a made-up bad input, then run on src/glassformer.
"""
import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "glassformer"
MAX_LINES = 450
PRECISION_NAMES = {"upcast", "to_compute", "y_dtype", "compute_dtype", "product_dtype"}
MATH = {"forward", "backward"}          # methods that hold a layer's math, beside @accelerated functions


# ---- the checkers --------------------------------------------------------------------------------------------

def module_files(src, package):
    """{dotted module name: path} of every .py file of package under src (a package is its __init__.py)."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def is_launcher(node):
    """True for `if __name__ == "__main__":`: code that runs only when the file is the program (python -m),
    never when the module is imported, so its hand-over to cli is not an import of the module."""
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and isinstance(test, ast.Compare) and \
        isinstance(test.left, ast.Name) and test.left.id == "__name__" and \
        [type(op) for op in test.ops] == [ast.Eq] and \
        [getattr(c, "value", None) for c in test.comparators] == ["__main__"]


def library_nodes(tree):
    """Every node of a parsed file but those inside its `if __name__ == "__main__":` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(child for child in ast.iter_child_nodes(node) if not is_launcher(child))


def imported_modules(tree, module, is_package, known):
    """Modules of `known` that a parsed file imports anywhere (in functions too), relative imports resolved;
    a `__main__` block's launcher is left out (tests/cli/test_entry_points.py checks those)."""
    here = module if is_package else module.rpartition(".")[0]    # the package a relative import starts at
    found = set()
    for node in library_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[:len(here.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # from pkg import name: the submodule pkg.name when there is one, else pkg itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:                # import a.b.c of an object: its module
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def import_graph(src, package):
    """{module: set of modules it imports}, for every module of package under src; a package's
    __main__.py is a launcher, the program, not a module anything imports, and is left out."""
    files = module_files(src, package)
    return {name: imported_modules(ast.parse(path.read_text(encoding="utf-8"), str(path)), name,
                                   path.name == "__init__.py", files)
            for name, path in files.items() if path.name != "__main__.py"}


def find_cycles(graph):
    """Import cycles [a, b, ..., a]: in each group of modules that import each other, the shortest through each."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):                                               # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph.get(v, ()):
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for group in groups:                                        # the shortest cycle through each member
        for v in sorted(group):
            cycle = _cycle_through(v, group, graph)[:-1]
            first = cycle.index(min(cycle))
            cycle = cycle[first:] + cycle[:first]               # the same cycle always starts alike
            if cycle + cycle[:1] not in cycles:
                cycles.append(cycle + cycle[:1])
    return cycles


def _cycle_through(start, group, graph):
    """The shortest import chain start -> ... -> start inside one strongly connected group (breadth first)."""
    paths, seen = [[start]], set()
    while paths:
        path = paths.pop(0)
        for w in sorted(graph.get(path[-1], ())):
            if w == start:
                return path + [start]
            if w in group and w not in seen:
                seen.add(w)
                paths.append(path + [w])
    raise AssertionError(f"no cycle through {start}")           # unreachable for a true group


def long_files(root, limit=MAX_LINES):
    """(path, lines) of every .py file under root longer than limit lines."""
    out = []
    for path in sorted(Path(root).rglob("*.py")):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > limit:
            out.append((str(path.relative_to(root)), n))
    return out


def dtype_juggling(text):
    """(line number, what) where layer code handles precision itself: a precision helper named anywhere;
    in the math (@accelerated functions, forward and backward methods) an .astype() call or a
    comparison that reads a .dtype (a branch on the data's type)."""
    tree = ast.parse(text)
    found = [(node.lineno, name) for node in ast.walk(tree)
             for name in ([node.id] if isinstance(node, ast.Name) else [node.attr] if isinstance(node, ast.Attribute)
                          else [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else [])
             if name in PRECISION_NAMES]
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or not is_math(fn):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "astype":
                found.append((node.lineno, "astype"))
            elif isinstance(node, ast.Compare) and any(isinstance(n, ast.Attribute) and n.attr == "dtype"
                                                       for n in ast.walk(node)):
                found.append((node.lineno, "dtype comparison"))
    return sorted(set(found))


def is_math(fn):
    """True for a function decorated @accelerated or a method named forward or backward."""
    names = {d.id if isinstance(d, ast.Name) else getattr(d, "attr", None) for d in fn.decorator_list}
    return "accelerated" in names or fn.name in MATH


def overlay_importers(graph, layers=f"{PACKAGE}.layers", overlays=(f"{PACKAGE}.kernels",)):
    """(importer, imported) for modules of layers that import an overlay package or one of its modules."""
    inside = lambda m, pkg: m == pkg or m.startswith(pkg + ".")               # noqa: E731
    return sorted((m, t) for m, targets in graph.items() if inside(m, layers)
                  for t in targets if any(inside(t, pkg) for pkg in overlays))


def cli_importers(graph, cli=f"{PACKAGE}.cli"):
    """(importer, imported) for modules outside the cli package that import it or one of its modules."""
    inside = lambda m: m == cli or m.startswith(cli + ".")
    return sorted((m, t) for m, targets in graph.items() if not inside(m) for t in targets if inside(t))


# ---- the checkers catch bad input ------------------------------------------------------------------------------

def test_cycle_finder_reports_each_cycle_as_a_chain():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": {"f"}, "g": {"a"}}
    assert sorted(find_cycles(graph)) == [["a", "b", "c", "a"], ["d", "e", "d"], ["f", "f"]]
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def write_package(root, files):
    """Write {relative path: source} under root as a made-up package."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_import_graph_sees_lazy_relative_and_package_imports(tmp_path):
    write_package(tmp_path, {
        "pkg/__init__.py": "from .sub import thing\n",
        "pkg/top.py": "import pkg.sub.deep as d\nfrom . import low\n",
        "pkg/low.py": "def late():\n    from .top import d\n    return d\n",     # lazy: a cycle all the same
        "pkg/sub/__init__.py": "",
        "pkg/sub/deep.py": "from ..low import late\nfrom .. import sub\nimport numpy\n",
        "pkg/sub/thing.py": "from pkg.sub.deep import late\n"})
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg"] == {"pkg.sub.thing"}
    assert graph["pkg.top"] == {"pkg.sub.deep", "pkg.low"}
    assert graph["pkg.low"] == {"pkg.top"}
    assert graph["pkg.sub.deep"] == {"pkg.low", "pkg.sub"} and graph["pkg.sub.thing"] == {"pkg.sub.deep"}
    assert find_cycles(graph) == [["pkg.low", "pkg.top", "pkg.low"], ["pkg.low", "pkg.top", "pkg.sub.deep", "pkg.low"]]


def test_import_graph_leaves_out_launchers_only(tmp_path):
    write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/cli.py": "from .lib import f\n",
        "pkg/lib.py": "def f():\n    from .other import g\n\n\nif __name__ == '__main__':\n"
                      "    from .cli import main\n    if True:\n        import pkg.cli\n",
        "pkg/other.py": "if __name__ != '__main__':\n    from .cli import main\n",
        "pkg/__main__.py": "from .cli import main\n"})
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.lib"] == {"pkg.other"} and graph["pkg.other"] == {"pkg.cli"}
    assert "pkg.__main__" not in graph


def test_long_file_finder(tmp_path):
    write_package(tmp_path, {"ok.py": "x = 1\n" * MAX_LINES, "long.py": "x = 1\n" * (MAX_LINES + 1)})
    assert long_files(tmp_path) == [("long.py", MAX_LINES + 1)]


def test_dtype_juggling_finder():
    text = ("from ..backend import upcast\n"                               # 1: a precision helper
            "def helper(x):\n"
            "    return x.astype(np.float32) if x.dtype == np.float16 else x\n"   # not math: allowed
            "@accelerated\n"
            "def f(x):\n"
            "    y = x.astype(np.float32)\n"                                 # 6
            "    if y.dtype != x.dtype:\n"                                   # 7
            "        return y\n"
            "    return upcast(y)\n"                                         # 9
            "class L:\n"
            "    def forward(self, x):\n"
            "        self.y_dtype = x.dtype\n"                               # 12: the attribute
            "        return x * self.scale\n"
            "    def backward(self, d):\n"
            "        return d.astype(self.y_dtype)\n")                       # 15: both
    assert [n for n, _ in dtype_juggling(text)] == [1, 6, 7, 9, 12, 15, 15]
    assert dtype_juggling("def forward(self, x):\n    return x @ self.W\n") == []


def test_overlay_importer_finder():
    graph = {"glassformer.layers.norm": {"glassformer.kernels.cpu.norm", "glassformer.backend"},
             "glassformer.layers": {"glassformer.kernels"}, "glassformer.models": {"glassformer.kernels"},
             "glassformer.layers.linear": {"glassformer.kernelsx"}}
    assert overlay_importers(graph) == [("glassformer.layers", "glassformer.kernels"),
                                        ("glassformer.layers.norm", "glassformer.kernels.cpu.norm")]


def test_cli_importer_finder():
    graph = {"glassformer.cli.lm": {"glassformer.cli.common", "glassformer.train"},
             "glassformer.train": {"glassformer.models"}, "glassformer.interp": {"glassformer.cli.common"},
             "glassformer.cli": set(), "glassformer.client": {"glassformer.cli"}}
    assert cli_importers(graph) == [("glassformer.client", "glassformer.cli"),
                                    ("glassformer.interp", "glassformer.cli.common")]


# ---- the rules, on the source ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def graph():
    return import_graph(SRC, PACKAGE)


def test_no_source_file_is_over_the_line_limit():
    too_long = long_files(SRC)
    assert not too_long, f"split these files (over {MAX_LINES} lines): {too_long}"


def test_no_import_cycles(graph):
    cycles = [" -> ".join(cycle) for cycle in find_cycles(graph)]
    assert not cycles, "import cycles (lazy imports count):\n" + "\n".join(cycles)


def test_layers_are_plain_reference_code(graph):
    """layers/ is the textbook: no overlay imported, no precision handled (the overlays own both)."""
    bad = [f"{path.name}:{n}: {what}" for path in sorted((SRC / PACKAGE / "layers").glob("*.py"))
           for n, what in dtype_juggling(path.read_text(encoding="utf-8"))]
    assert not bad, "layers/ handles precision (kernels/ and kernels/cpu/ own that):\n" + "\n".join(bad)
    assert not overlay_importers(graph), f"layers/ imports an overlay: {overlay_importers(graph)}"


def test_nothing_outside_cli_imports_cli(graph):
    bad = cli_importers(graph)
    assert not bad, f"cli/ is the top floor; these import it: {bad}"


def test_the_import_contracts_hold():
    """lint-imports (import-linter, in the test extra) keeps every contract of setup.cfg: the floors hold."""
    import subprocess

    from tools import tool
    exe = tool("lint-imports")
    assert exe, "lint-imports is missing: install the test extra with pip install -e \".[test]\""
    done = subprocess.run([exe, "--no-cache"], cwd=SRC.parent, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
