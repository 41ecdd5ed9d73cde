"""The layering of `clinreason` ("One owner for every record"), checked with maintained tools.

The contracts live in pyproject.toml under [tool.importlinter]: domain imports nothing of the project, store only
domain, stages neither the web app nor the CLI, and no cycles between siblings anywhere. `lint-imports` checks them;
this module runs it so that a plain `pytest` catches a broken contract too, and adds a module-level cycle check
with grimp (import-linter's own graph library) that also sees cycles through a package's `__init__`, which the
sibling-level contract does not.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports_command() -> list[str]:
    script = Path(sys.executable).with_name("lint-imports")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def test_import_contracts_are_kept() -> None:
    pytest.importorskip("importlinter")
    proc = subprocess.run(
        [*_lint_imports_command(), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"lint-imports failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (or a module importing itself), via Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    for start in sorted(graph.modules):
        if start in index:
            continue
        # iterative DFS: (module, iterator over its successors)
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.find_modules_directly_imported_by(succ)))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or graph.direct_import_exists(importer=node, imported=node):
                    found.append(sorted(component))
    return found


def _describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    members = set(component)
    lines = [" <-> ".join(component)]
    for importer in component:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            details = graph.get_import_details(importer=importer, imported=imported)
            for line_number, contents in sorted({(d["line_number"], d["line_contents"]) for d in details}):
                lines.append(f"    {importer}:{line_number}: {contents} -> {imported}")
    return "\n".join(lines)


def test_no_import_cycles_between_modules() -> None:
    graph = grimp.build_graph("clinreason", cache_dir=None)
    cycles = _cycles(graph)
    assert not cycles, "import cycles in clinreason:\n" + "\n".join(_describe(graph, c) for c in cycles)
