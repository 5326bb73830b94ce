"""The data flow of docs/design.md, held in the imports: no module imports one above it, no cycles.

Areas, bottom to top (a module may import its own area and any area below it):
the shared vocabulary and plumbing (types, errors, paths, config, ...), datasets, vision, codecs,
metrics, records, points, tables, analysis, regress, render (report and plots), run (and the merge of
shards, which ends a sweep the same way, and the golden digests, which run its stages), train, and the
command line (with the sharded sweep). The exact arithmetic (`exact`) is plumbing: every stage runs in it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vcmbench

PACKAGE = Path(vcmbench.__file__).resolve().parent
LAYERS = [
    {
        "vcmbench",
        "types",
        "errors",
        "paths",
        "atomic",
        "settings",
        "determinism",
        "config",
        "train_state",
        "conf",
        "provenance",
        "exact",
        "thread_budget",
        "run_config",
        "process_map",
    },
    {"datasets"},
    {"vision"},
    {"codecs"},
    {"metrics"},
    {"records", "timing_table"},
    {"points", "aggregate"},
    {"tables"},
    {"analysis", "bootstrap"},
    {"regress"},
    {"render"},
    {"jobs", "domain"},
    {"item_coding"},
    {"run", "merge", "golden", "timing_pass"},
    {"train"},
    {"command_line", "cli", "__main__", "sweep"},
]
RANK = {area: i for i, layer in enumerate(LAYERS) for area in layer}


def module_name(path: Path) -> str:
    parts = ("vcmbench", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vcmbench":
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "vcmbench"}
        graph[module_name(path)] = found
    return graph


def area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "vcmbench"


def test_every_area_has_a_place_in_the_flow():
    assert {area(m) for m in imports()} <= set(RANK), "a new top-level module: give it a layer in this test"


def test_no_module_imports_one_above_it():
    upward = [f"{m} imports {i}" for m, deps in imports().items() for i in deps if RANK[area(i)] > RANK[area(m)]]
    assert not upward, "imports against the data flow:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    graph = {m: {d for d in deps if d in imports_cache} for m, deps in imports_cache.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                cycles.append(" -> ".join([*stack[stack.index(d) :], d]))
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


imports_cache = imports()


def test_no_module_is_over_500_lines():
    """Small modules with one job each: a module that grows past 500 lines is split by its jobs."""
    long = {
        str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500
    }
    assert not long, f"modules over 500 lines: {long}"
