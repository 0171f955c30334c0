"""The package layout README "Layout" describes: installed names under `wvlp`, no import circle, each package
importing only what it may.

The import graph is read from the source (every `import`, at module level or inside a function, since a lazy import
is still a dependency), with pyproject's package-dir mapping from folders to `wvlp.*` names.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


def project_modules() -> dict[str, Path]:
    """Every installed module's dotted name -> its file."""
    modules = {}
    for name, folder in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            subfolders = [ROOT / folder / Path(*parts[: i + 1]) for i in range(len(parts) - 1)]
            if not all((sub / "__init__.py").is_file() for sub in subfolders):
                continue  # data folders (evaluation/metrics/...) are not packages
            modules[".".join((name, *parts)).removesuffix(".__init__")] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports (relative imports resolved; `from pkg import mod` counts `pkg.mod`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in known and target != name}
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def test_no_import_circle_between_project_modules():
    edges = graph()
    state, cycles = {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


# package -> the project packages it may import (README "Layout").
MAY_IMPORT = {
    "wvlp.common": set(),
    "wvlp.modeling": set(),
    "wvlp.data": {"wvlp.modeling", "wvlp.common"},
    # query sets: the CuPL mapping and the leakage check are the data side's, the evaluation reads them
    "wvlp.evaluation": {"wvlp.modeling", "wvlp.data.holdout", "wvlp.data.query_sets", "wvlp.common"},
    "wvlp.train": {"wvlp.modeling", "wvlp.data", "wvlp.evaluation", "wvlp.common"},
    "wvlp.release": {"wvlp.evaluation.schema", "wvlp.common"},
}


def package_of(module: str) -> str:
    return max((p for p in PACKAGE_DIRS if module == p or module.startswith(p + ".")), key=len)


def test_each_package_imports_only_what_the_layout_allows():
    wrong = []
    for module, targets in graph().items():
        package = package_of(module)
        if package not in MAY_IMPORT:
            continue  # the app layer may import everything
        for target in targets:
            allowed = package_of(target) == package or any(
                target == a or target.startswith(a + ".") for a in MAY_IMPORT[package]
            )
            if not allowed:
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong
    assert set(graph()["wvlp"]) == set(), "app/__init__.py imports nothing"


@pytest.mark.slow  # a fresh interpreter outside the repository
def test_only_wvlp_names_are_installed(tmp_path):
    """Outside the checkout, the generic folder names are not importable; the `wvlp` names and command are."""
    probe = "import importlib.util as u; print([n for n in ('train', 'evaluation', 'dataset_builder', 'modeling_wvlp', 'app', 'release', 'common') if u.find_spec(n)])"
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"
    wvlp = Path(sys.executable).with_name("wvlp")
    help_text = subprocess.run([str(wvlp), "--help"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "describe" in help_text.stdout and "train" in help_text.stdout
