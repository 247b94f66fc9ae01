"""The package is layered and acyclic: a module imports only modules of its own tier or below,
and no chain of imports comes back to where it started. Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent / "kit"

# Lowest first: the order in which data reaches each module.
TIERS = [
    {"errors", "atomic", "console", "blas"},
    {"data", "measure", "runs_table", "preprocess"},
    {"metrics", "layers", "image_layers", "losses", "optim", "augment", "report_plots"},
    {"config"},
    {"space"},
    {"network"},
    {"runs"},
    {"train"},
    {"onnx_predict"},
    {"parallel", "submit", "report", "serve", "cluster"},
    {"archive", "kaggle_auth", "kaggle_client", "export", "sweep"},
    {"kaggle_io", "demo", "onnx_bench", "serve_bench", "sweep_bench"},
    {"bench"},
    {"cli", "__main__"},
]
TIER = {name: rank for rank, names in enumerate(TIERS) for name in names}


def kit_imports(path: Path) -> set[str]:
    """Names of the kit's modules that a file imports (`from .x import`, `from . import x`, `import kit.x`)."""
    modules = {p.stem for p in KIT.glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1 or base == "kit" or base.startswith("kit."):
                base = base.removeprefix("kit").lstrip(".")
                if base:
                    found.add(base.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("kit."))
    return found & modules - {"__init__"}


def graph() -> dict[str, set[str]]:
    return {p.stem: kit_imports(p) - {p.stem} for p in KIT.glob("*.py") if p.stem != "__init__"}


def test_every_module_has_a_tier():
    assert not set(graph()) - set(TIER), "add the new module to TIERS"


def test_no_module_imports_one_above_it():
    upward = [f"{a} (tier {TIER[a]}) imports {b} (tier {TIER[b]})"
              for a, deps in graph().items() for b in deps if TIER[b] > TIER[a]]
    assert not upward


def test_no_import_circle():
    imports, state, path = graph(), {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for dep in sorted(imports[module]):
            assert state.get(dep) != "open", "import circle: " + " -> ".join(path[path.index(dep):] + [dep])
            if dep not in state:
                visit(dep)
        path.pop()
        state[module] = "done"

    for module in sorted(imports):
        if module not in state:
            visit(module)


def test_the_check_sees_imports_in_functions(tmp_path):
    """The parser itself: a function-level import and the three spellings are found."""
    source = tmp_path / "probe.py"
    source.write_text("from . import data\nimport kit.network\ndef f():\n    from .train import fit\n"
                      "    from kit.runs import resolve_model\n")
    assert kit_imports(source) == {"data", "network", "train", "runs"}


def test_the_readme_layout_names_every_module():
    readme = (KIT.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("## The bundled sample")]
    assert not [p.name for p in KIT.glob("*.py") if p.stem not in ("__init__", "__main__") and p.name not in layout]
