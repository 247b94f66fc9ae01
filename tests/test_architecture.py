"""The package's map is a rule: each part of kit/ imports only the parts below it, no chain of
imports comes back to where it started, the heavy libraries stay in the one part that needs
them, and training imports none of them. Imports inside functions count too: a lazy import is
still a dependency."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parent.parent / "kit"

# The parts: a subpackage each, plus the modules at the top. Each may import itself and these.
BELOW_RUN = {"core", "nn", "data", "config"}
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "nn": {"core"},
    "data": {"core"},
    "config": {"core", "nn"},
    "run": BELOW_RUN,
    "kaggle": {"core", "data"},
    "onnx": BELOW_RUN | {"run"},
    "report": BELOW_RUN | {"run"},
    "serve": BELOW_RUN | {"run"},
    "sweep": BELOW_RUN | {"run"},
    "bench": BELOW_RUN | {"run", "onnx", "serve", "sweep"},
    "demo": BELOW_RUN | {"run", "kaggle", "report"},
    "cli": BELOW_RUN | {"run", "kaggle", "onnx", "report", "serve", "sweep", "bench", "demo"},
    "__main__": {"cli"},
    "__init__": {"core"},
}

# Third-party libraries that cost seconds to import or belong to one job, and the parts that
# may import them.
HEAVY: dict[str, set[str]] = {
    "fastapi": {"serve"},
    "starlette": {"serve"},
    "uvicorn": {"serve"},
    "pydantic": {"serve"},
    "onnx": {"onnx"},
    "onnxruntime": {"onnx"},
    "matplotlib": {"report"},
    "sklearn.metrics": {"report"},
    "dask": {"sweep"},
    "distributed": {"sweep"},
    "kaggle": {"kaggle"},
    "kagglesdk": {"kaggle"},
    "requests": {"kaggle"},
}


def part_of(path: Path) -> str:
    """kit/run/train.py -> "run"; kit/config.py -> "config"."""
    relative = path.relative_to(KIT)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imports(path: Path, package: str | None = None) -> tuple[set[str], set[str]]:
    """(the kit names a file imports, dotted: "kit.nn.layers", "kit.config.Config";
    the other absolute imports: "numpy", "sklearn.metrics"), function-level ones included.
    `package` ("kit.run") resolves relative imports; default: where the file is in kit/."""
    package = (package or ".".join(["kit", *path.relative_to(KIT).parts[:-1]])).split(".")
    kit_names, others = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the file's package
                base = ".".join(
                    package[: len(package) - node.level + 1] + ([node.module] if node.module else [])
                )
            else:
                base = node.module or ""
            if base == "kit" or base.startswith("kit."):
                kit_names.update(f"{base}.{alias.name}" for alias in node.names)
            else:
                others.add(base)
                others.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                (kit_names if alias.name.split(".")[0] == "kit" else others).add(alias.name)
    return kit_names, others


def kit_part(dotted: str) -> str:
    """ "kit.nn.layers" -> "nn"; "kit.config" -> "config"; "kit.__version__" -> "__init__"."""
    parts = dotted.split(".")
    if len(parts) == 1 or parts[1] == "__version__":
        return "__init__"
    return parts[1]


def sources() -> list[Path]:
    return sorted(KIT.rglob("*.py"))


def test_every_part_is_in_the_table():
    assert {part_of(p) for p in sources()} <= set(MAY_IMPORT), "add the new part to MAY_IMPORT"


def test_each_part_imports_only_what_the_table_allows():
    wrong = []
    for path in sources():
        part = part_of(path)
        kit_names, _ = imports(path)
        for name in sorted(kit_names):
            target = kit_part(name)
            if target != part and target not in MAY_IMPORT[part]:
                wrong.append(f"{path.relative_to(KIT.parent)} ({part}) imports {name} ({target})")
    assert not wrong, "\n".join(wrong)


def test_each_subpackage_docstring_states_its_rule():
    """Every subpackage's __init__.py says what it holds and, on a line of its own,
    'May import: a, b' (or 'May import: nothing of the kit'), which must be the table's row."""
    for init in sorted(KIT.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        line = next((line for line in doc.splitlines() if line.startswith("May import:")), None)
        assert line, f"{init.relative_to(KIT.parent)}: no 'May import:' line in its docstring"
        stated = line.removeprefix("May import:").strip().rstrip(".")
        names = set() if stated == "nothing of the kit" else {n.strip() for n in stated.split(",")}
        assert names == MAY_IMPORT[init.parent.name], f"{init.relative_to(KIT.parent)} says {line!r}"


def module_of(dotted: str) -> str:
    """The kit module an imported name lives in: "kit.nn.layers.Dense" -> "kit.nn.layers"."""
    while True:
        path = KIT.parent / dotted.replace(".", "/")
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            return dotted
        dotted = dotted.rsplit(".", 1)[0]


def test_the_architecture_page_names_every_part():
    """docs/architecture.md's table is the map a newcomer reads: it must name every part."""
    page = (KIT.parent / "docs" / "architecture.md").read_text()
    table = page[page.index("| part |") : page.index("Heavy libraries")]
    missing = [part for part in MAY_IMPORT if part not in ("__init__", "__main__") and part not in table]
    assert not missing, f"docs/architecture.md does not name {missing}"


def test_no_import_circle_between_modules():
    graph: dict[str, set[str]] = {}
    for path in sources():
        module = ".".join(["kit", *path.relative_to(KIT).with_suffix("").parts]).removesuffix(".__init__")
        graph[module] = {module_of(name) for name in imports(path)[0]} - {module}
    state: dict[str, str] = {}
    trail: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        trail.append(module)
        for dep in sorted(graph.get(module, ())):
            assert state.get(dep) != "open", "import circle: " + " -> ".join(
                trail[trail.index(dep) :] + [dep]
            )
            if dep not in state:
                visit(dep)
        trail.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_heavy_libraries_stay_in_their_part():
    wrong = []
    for path in sources():
        part = part_of(path)
        for name in imports(path)[1]:
            for library, allowed in HEAVY.items():
                if (name == library or name.startswith(library + ".")) and part not in allowed:
                    wrong.append(f"{path.relative_to(KIT.parent)} ({part}) imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_checks_see_every_spelling(tmp_path):
    """The parser itself: relative, absolute, function-level, and `from kit import x`."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from ..nn import layers\nfrom . import folders\nimport kit.data.load\nimport numpy as np\n"
        "def f():\n    from kit.config import Config\n    from kit import __version__\n"
        "    from sklearn.metrics import confusion_matrix\n"
    )
    kit_names, others = imports(source, package="kit.run")
    assert kit_names == {
        "kit.nn.layers",
        "kit.run.folders",
        "kit.data.load",
        "kit.config.Config",
        "kit.__version__",
    }
    assert {"numpy", "sklearn.metrics"} <= others
    assert sorted(kit_part(n) for n in kit_names) == ["__init__", "config", "data", "nn", "run"]
    assert module_of("kit.nn.layers.Dense") == "kit.nn.layers" and module_of("kit.__version__") == "kit"


@pytest.mark.slow
def test_training_imports_none_of_the_heavy_libraries(tmp_path):
    """`make train REPORT=0` end to end in a fresh process: afterwards none of the web, ONNX,
    plotting, cluster or Kaggle libraries is loaded."""
    from synthetic import write_train

    train = write_train(tmp_path / "train.csv", n=200)
    code = (
        "import json, sys; from kit.cli import main; "
        f"rc = main(['train', '--train', {str(train)!r}, '--model-dir', {str(tmp_path / 'models')!r}, "
        "'--epochs', '1', '--report', '0']); "
        "print(json.dumps({'rc': rc, 'modules': sorted(sys.modules)}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["rc"] == 0
    loaded = [m for m in outcome["modules"] if any(m == lib or m.startswith(lib + ".") for lib in HEAVY)]
    assert not loaded, f"training loaded {loaded[:8]}"
    assert "kit.run.train" in outcome["modules"]  # the probe really trained
