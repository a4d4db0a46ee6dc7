"""The harness is a clean component: it imports only lemonkit's public API, has no import
cycle, and ``import lemonkit`` loads neither it nor matplotlib."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
HARNESS = ROOT / "src" / "lemonkit" / "harness"


def _lemonkit_imports(path: Path) -> set[str]:
    """The ``lemonkit...`` modules a file imports (top level and inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "lemonkit"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lemonkit"):
            submodules = {f"{node.module}.{a.name}" for a in node.names}
            out |= {m for m in submodules if (ROOT / "src" / f"{m.replace('.', '/')}.py").exists()}
            out.add(node.module)
    return out


def test_the_harness_imports_no_cycle_and_only_lemonkits_public_api():
    graph = {
        f"lemonkit.harness.{f.stem}": _lemonkit_imports(f)
        for f in HARNESS.glob("*.py")
        if f.stem != "__init__"
    }
    for module, imports in graph.items():
        core = {m for m in imports if not m.startswith("lemonkit.harness")}
        assert core <= {"lemonkit"}, (module, core)  # not lemonkit.plan, lemonkit.ki...
    done: list[str] = []  # modules in import order: each after everything it imports
    while len(done) < len(graph):
        ready = [m for m in graph if m not in done and graph[m] & set(graph) <= set(done)]
        assert ready, f"import cycle among {sorted(set(graph) - set(done))}"
        done += sorted(ready)


def _loaded(statement: str, prefix: str) -> list[str]:
    """The modules named ``prefix...`` that ``statement`` loads in a fresh interpreter."""
    listing = f"sorted(m for m in sys.modules if m.startswith({prefix!r}))"
    code = f"import sys\n{statement}\nprint({listing})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return ast.literal_eval(done.stdout)


def test_import_lemonkit_loads_neither_the_harness_nor_matplotlib():
    assert _loaded("import lemonkit", "lemonkit.harness") == []
    assert _loaded("import lemonkit", "matplotlib") == []
    # the whole harness: matplotlib is imported inside plots.plot only
    assert _loaded("import lemonkit.harness.cli", "matplotlib") == []
