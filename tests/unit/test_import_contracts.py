"""The import rules of README "Architecture", checked on the real import graph (grimp, the
library import-linter runs on). The forbidden/protected contracts live in pyproject.toml and
run as `lint-imports` in `make lint`; this test runs them too, and checks what import-linter
has no contract for: no import cycle between any two modules, imports made only for type
checking included (they tie the files together just the same)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]


def _module_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph.find_modules_directly_imported_by(start)))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.find_modules_directly_imported_by(nxt))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
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
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("bot", exclude_type_checking_imports=False, cache_dir=None)
    cycles = _module_cycles(graph)
    chains = [graph.find_shortest_chain(c[0], c[1]) for c in cycles]
    assert cycles == [], f"import cycles: {cycles}; e.g. {chains}"


def test_the_cycle_check_sees_a_type_checking_import() -> None:
    """The check above is only worth something if it catches the kind of cycle that slipped in
    before: a module importing another only under TYPE_CHECKING."""
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b", line_number=1, line_contents="from pkg import b")
    graph.add_import(importer="pkg.b", imported="pkg.a", line_number=5, line_contents="from pkg import a")
    assert _module_cycles(graph) == [["pkg.a", "pkg.b"]]


def test_import_contracts_hold() -> None:
    """pyproject.toml's [tool.importlinter] contracts: incidents import neither Slack nor
    actions; runbooks and diagnostics neither; actions no Slack; only the command line and the
    demo import the composition root; only the command line imports the stand-ins."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
