"""The module import graph of the repository, read with ``ast`` (nothing is imported): no import circles, and
every arrow points down the layers of DEVELOPERS.md (``mm_cli`` -> ``cliperase``, ``sasrnet`` -> ``mmcore``;
benchmarks use the libraries, never ``mm_cli``).

Every import statement counts, wherever it is: module level, inside a function (a lazy import still closes a
circle, only later) and under ``if TYPE_CHECKING:`` (the modules still know each other). ``from a.b import c``
is an edge to ``a.b.c`` when that is a module of the repository, else to ``a.b``."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("mmcore", "cliperase", "sasrnet")
METHODS = ("cliperase", "sasrnet")

# Private (underscore) names a module still imports from another; the list may only shrink.
PRIVATE_IMPORTS_LEFT = {
    ("cliperase.api", "mmcore.encoders.clip", "_make_preprocess"),
    ("mmcore.avqa.feature_extraction", "mmcore.media", "_resolve_backend"),
    ("mmcore.avqa.synth", "mmcore.avqa.synth.questions", "_draw_questions"),
    ("mmcore.avqa.synth", "mmcore.avqa.synth.world", "_sample_world"),
    ("mmcore.encoders.export", "mmcore.encoders.hf_export", "_activation"),
    ("mmcore.encoders.export", "mmcore.encoders.hf_export", "_write_bpe_files"),
}


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Module name -> file, for packages/*/src, apps/*/src and benchmarks/."""
    out = {}
    for src in sorted(ROOT.glob("packages/*/src")) + sorted(ROOT.glob("apps/*/src")):
        out.update({_module_name(f, src): f for f in sorted(src.rglob("*.py"))})
    out.update({_module_name(f, ROOT): f for f in sorted((ROOT / "benchmarks").rglob("*.py"))})
    return out


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The deepest module of the repository that ``name`` (dotted) is or lies in."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports() -> list[tuple[str, str, str, str | None]]:
    """(importing module, imported module, "FILE:LINE: statement", name taken from it or None)."""
    mods = modules()
    out = []
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}: "
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if (target := _owner(alias.name, mods)) is not None:
                        out.append((mod, target, where + ast.unparse(node), None))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    if f"{base}.{alias.name}" in mods:
                        out.append((mod, f"{base}.{alias.name}", where + ast.unparse(node), None))
                    elif (target := _owner(base, mods)) is not None:
                        out.append((mod, target, where + ast.unparse(node), alias.name))
    return [e for e in out if e[0] != e[1]]


def graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {m: set() for m in modules()}
    for a, b, _, _ in imports():
        g[a].add(b)
    return g


def strongly_connected(g: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(g[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    comps.append(sorted(comp))
    return comps


def _top(module: str) -> str:
    return module.split(".")[0]


def _lines(pred) -> list[str]:
    return sorted({f"{a} -> {b}   [{line}]" for a, b, line, _ in imports() if pred(a, b)})


def test_the_graph_sees_the_repository():
    mods = modules()
    assert {"mmcore.run", "cliperase.trainer", "sasrnet.model", "mm_cli.main", "benchmarks._common"} <= set(mods)
    edges = {(a, b) for a, b, _, _ in imports()}
    assert ("cliperase.trainer", "mmcore.run") in edges  # module level
    assert ("mm_cli.bench_cmds", "benchmarks.__main__") in edges  # inside a function
    assert ("mmcore.data", "mmcore.data.records") in edges  # a package's __init__


def test_strongly_connected_finds_a_circle():
    comps = strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert sorted(c for c in comps if len(c) > 1) == [["a", "b", "c"]]


def test_no_import_circles():
    circles = [c for c in strongly_connected(graph()) if len(c) > 1]
    report = []
    for comp in circles:
        members = set(comp)
        report.append(f"circle of {len(comp)}: " + ", ".join(comp))
        report += ["    " + ln for ln in _lines(lambda a, b, m=members: a in m and b in m)]
    assert not circles, "\n" + "\n".join(report)


def test_mmcore_imports_no_method_package_nor_the_cli():
    bad = _lines(lambda a, b: _top(a) == "mmcore" and _top(b) in ("cliperase", "sasrnet", "mm_cli", "benchmarks"))
    assert not bad, "\n" + "\n".join(bad)


def test_method_packages_never_import_each_other():
    bad = _lines(lambda a, b: _top(a) in METHODS and _top(b) in METHODS and _top(a) != _top(b))
    assert not bad, "\n" + "\n".join(bad)


def test_only_the_cli_imports_the_cli():
    bad = _lines(lambda a, b: _top(b) == "mm_cli" and _top(a) != "mm_cli")
    assert not bad, "\n" + "\n".join(bad)


def test_benchmarks_use_the_libraries_only():
    bad = _lines(lambda a, b: _top(a) == "benchmarks" and _top(b) not in (*LIBRARIES, "benchmarks"))
    bad += _lines(lambda a, b: _top(a) in LIBRARIES and _top(b) == "benchmarks")
    assert not bad, "\n" + "\n".join(bad)


def test_no_new_private_names_imported_across_modules():
    found = {(a, b, name) for a, b, _, name in imports()
             if name and name.startswith("_") and not name.startswith("__") and _top(b) != "benchmarks"}
    new = sorted(found - PRIVATE_IMPORTS_LEFT)
    assert not new, "make these public or move them: " + ", ".join(f"{a} <- {b}.{n}" for a, b, n in new)
    assert not PRIVATE_IMPORTS_LEFT - found, f"fixed: drop from PRIVATE_IMPORTS_LEFT: {PRIVATE_IMPORTS_LEFT - found}"
