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
LAYER_WORDS = re.compile(r"\b(fused|cupy|float16|to_compute|backward_mixed|precision)\b")


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


def imported_modules(tree, module, is_package, known):
    """Modules of `known` that a parsed file imports anywhere (in functions too), relative imports resolved."""
    here = module if is_package else module.rpartition(".")[0]    # the package a relative import starts at
    found = set()
    for node in ast.walk(tree):
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
    """{module: set of modules it imports}, for every module of package under src."""
    files = module_files(src, package)
    return {name: imported_modules(ast.parse(path.read_text(encoding="utf-8"), str(path)), name,
                                   path.name == "__init__.py", files)
            for name, path in files.items()}


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


def device_words(text):
    """(line number, line) of code lines, trailing comments included, that name a device or precision concern."""
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1)
            if not line.lstrip().startswith("#") and LAYER_WORDS.search(line)]


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


def test_long_file_finder(tmp_path):
    write_package(tmp_path, {"ok.py": "x = 1\n" * MAX_LINES, "long.py": "x = 1\n" * (MAX_LINES + 1)})
    assert long_files(tmp_path) == [("long.py", MAX_LINES + 1)]


def test_device_word_finder():
    text = ("# a full-line comment may say precision or cupy\n"
            "y = x @ W                      # fp32 here\n"
            "y = fused_gelu(x)              # a longer name is fine\n"
            "y = to_compute(x)\n"
            "z = y  # float16 in a trailing comment counts\n"
            "from .. import precision\n")
    assert [n for n, _ in device_words(text)] == [4, 5, 6]


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


def test_layers_are_plain_reference_code():
    bad = [f"{path.name}:{n}: {line}" for path in sorted((SRC / PACKAGE / "layers").glob("*.py"))
           for n, line in device_words(path.read_text(encoding="utf-8"))]
    assert not bad, "layers/ names a device or precision concern (kernels/ and precision.py own those):\n" + \
        "\n".join(bad)


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
