"""The layer contract, checked over the import graph (imports inside functions included).

    0 bottom    errors, registry, io (files, images, atomic writes), streams, cache, resources, viz, and each
                stage's result types (tag/, locate/, segment/, evaluate/result.py)
    1 models    one file per model family: forward passes and loading only
    2 stages    tag (with its clustering), locate, segment; each component defines its own config block
    3 top       config (assembles the blocks into one file layout), pipeline, runs, evaluate, cli

A module imports only from its own layer or below, never another package's private names, and no two
modules import each other, however indirectly. KNOWN and KNOWN_CYCLES list what breaks this today: the
tests fail on anything new, and on a listed entry that is gone (so the lists only shrink).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "selfseg"

LAYERS = [
    ("bottom", ["selfseg.errors", "selfseg.registry", "selfseg.io", "selfseg.streams", "selfseg.cache",
                "selfseg.resources", "selfseg.viz", "selfseg.tag.result", "selfseg.locate.result",
                "selfseg.segment.result", "selfseg.evaluate.result"]),
    ("models", ["selfseg.models"]),
    ("stages", ["selfseg.tag", "selfseg.locate", "selfseg.segment"]),
    ("top", ["selfseg.config", "selfseg.pipeline", "selfseg.runs", "selfseg.evaluate", "selfseg.label", "selfseg.cli",
             "selfseg.__main__", "selfseg"]),
]

# Edges that break the contract today (none left: keep it that way).
KNOWN: set[tuple[str, str]] = set()


# Import cycles today, as the module prefixes each may span (none left: keep it that way).
KNOWN_CYCLES: list[tuple[str, ...]] = []


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import statement, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("selfseg")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("selfseg"):
                names = [a.name for a in node.names]
                # `from . import x` may name a submodule: count it as an import of that module
                subs = [f"{target}.{n}" for n in names if (PACKAGE.parent / f"{target}.{n}".replace(".", "/")).exists()
                        or (PACKAGE.parent / (f"{target}.{n}".replace(".", "/") + ".py")).exists()]
                found += [(s, []) for s in subs] or [(target, names)]
    return found


def _layer(module: str) -> int:
    best, depth = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > depth:
                best, depth = i, len(p)
    assert best is not None, f"{module}: in no layer; add it to LAYERS"
    return best


def _graph() -> dict[str, list[tuple[str, list[str]]]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _shares_private_names(a: str, b: str) -> bool:
    """Modules of one subpackage (selfseg.tag.*) may share private helpers; nothing else may."""
    pa, pb = a.rsplit(".", 1)[0], b.rsplit(".", 1)[0]
    return a == b or (pa == pb and pa != "selfseg")


def _violations() -> set[tuple[str, str]]:
    bad = set()
    for mod, imports in _graph().items():
        for target, names in imports:
            upward = _layer(target) > _layer(mod)
            # a private name of another package (a helper the owner may change at will)
            private = any(n.startswith("_") and not n.startswith("__") for n in names) \
                and not _shares_private_names(mod, target)
            if upward or private:
                bad.add((mod, target))
    return bad


def test_no_new_layer_violations():
    new = sorted(_violations() - KNOWN)
    assert not new, "imports against the layer contract (see this file's docstring):\n" + \
        "\n".join(f"  {a} -> {b}" for a, b in new)


def test_known_violations_are_still_there():
    gone = sorted(KNOWN - _violations())
    assert not gone, "fixed (remove from KNOWN):\n" + "\n".join(f"  {a} -> {b}" for a, b in gone)


def test_no_import_cycles():
    graph = {m: {t for t, _ in imps if t != m} for m, imps in _graph().items()}
    modules = set(graph)
    # a package's __init__ importing its own submodules is how registries fill: not a cycle between layers
    edges = {m: {t for t in ts if t in modules and not m == t.rsplit(".", 1)[0]} for m, ts in graph.items()}
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)

    def known(comp):
        return next((i for i, group in enumerate(KNOWN_CYCLES)
                     if all(any(m == g or (g.endswith(".") and m.startswith(g)) for g in group) for m in comp)), None)

    new = [c for c in cycles if known(c) is None]
    assert not new, f"import cycles: {new}"
    gone = set(range(len(KNOWN_CYCLES))) - {known(c) for c in cycles}
    assert not gone, f"cycles fixed (remove from KNOWN_CYCLES): {[KNOWN_CYCLES[i] for i in sorted(gone)]}"


@pytest.mark.parametrize("module", ["selfseg.io", "selfseg.errors", "selfseg.tag.result"])
def test_the_checker_sees_imports_inside_functions(module):
    """Not vacuous: the graph holds function-level imports (models.blip imports transformers lazily, and
    the pipeline imports taggers inside functions)."""
    graph = _graph()
    assert ("selfseg.tag", ["build_tagger"]) in graph["selfseg.pipeline"]
    assert module in graph


def _loaded_at_import(path: Path) -> list[str]:
    """The selfseg modules a module's own import runs: its imports outside functions and outside
    `if TYPE_CHECKING:` blocks (class bodies run at import, so they count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: list[str] = []

    def visit(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            test = getattr(node, "test", None)
            if isinstance(node, ast.If) and ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.extend(a.name for a in node.names if a.name.startswith("selfseg"))
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
                if target.startswith("selfseg"):
                    subs = [f"{target}.{a.name}" for a in node.names
                            if (PACKAGE.parent / f"{target}.{a.name}".replace(".", "/")).exists()
                            or (PACKAGE.parent / (f"{target}.{a.name}".replace(".", "/") + ".py")).exists()]
                    found.extend(subs or [target])
            for field in ("body", "orelse", "finalbody", "handlers"):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and hasattr(node, field):
                    visit(getattr(node, field))

    visit(tree.body)
    return found


def test_bottom_modules_run_only_bottom_modules_when_imported():
    """A stage's result.py sits in the stage's folder but in the bottom layer: importing it runs its package's
    `__init__` too, so that must stay free of the stage (lazy names), and so on up."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    direct = {m: _loaded_at_import(p) for m, p in paths.items()}

    def closure(module: str) -> set[str]:
        seen, todo = set(), [module]
        while todo:
            m = todo.pop()
            parts = m.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
                name = ".".join(parts[:i])
                if name in paths and name not in seen:
                    seen.add(name)
                    todo.extend(direct[name])
        return seen

    bottom = 0
    bad = {}
    for m in paths:
        if _layer(m) == 0:
            bottom += 1
            # A package's __init__ is only its import-time imports, which the closure follows: it does not count
            # itself, so a stage package whose names load lazily does not pull its stage in.
            above = sorted(x for x in closure(m) if _layer(x) > 0 and paths[x].name != "__init__.py")
            if above:
                bad[m] = above
    assert set(LAYERS[0][1]) <= {m for m in paths if _layer(m) == 0} and bottom  # every bottom module looked at
    assert not bad, f"bottom modules that run upper-layer modules when imported: {bad}"
