"""The lines of glassformer's code behind a stage, read with `inspect` from the package that ran."""
import inspect
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]               # src/glassformer (or site-packages/...)


def qualified(obj):
    """'glassformer.layers.norm.LayerNorm.forward': the key a stage names its code by."""
    obj = inspect.unwrap(obj)
    return f"{obj.__module__}.{obj.__qualname__}"


def source(obj):
    """{"name", "file", "line", "lines"} of a function or method, as the running package has it."""
    obj = inspect.unwrap(obj)                               # @accelerated: the reference function
    lines, first = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj)).resolve()
    try:
        where = "glassformer/" + path.relative_to(PACKAGE).as_posix()
    except ValueError:                                      # not under the package: say where it is
        where = str(path)
    return {"name": qualified(obj), "file": where, "line": first,
            "lines": [line.rstrip("\n") for line in lines]}


def ref(obj, *marks):
    """A stage's pointer to obj's code: its name and the lines (0-based) containing any mark."""
    code = [line.split("  #")[0] for line in source(obj)["lines"]]   # comments aside
    hit = [i for i, line in enumerate(code)
           if not line.strip().startswith(('"""', "#")) and any(m in line for m in marks)]
    return {"name": qualified(obj), "marks": hit, "obj": obj}


def collect(stages):
    """{name: source} of every function the stages point to (each read once), the refs made JSON."""
    table = {}
    for stage in stages:
        for r in stage.get("code", []):
            obj = r.pop("obj", None)
            if obj is not None and r["name"] not in table:
                table[r["name"]] = source(obj)
    return table
