"""Limits a reviewer can check, on the package, the benchmarks and the tests: no module over 400
lines, no function over 60; and on the package's imports: no cycle between modules, and three layers that
only import downwards (entry points -> `defs/` wiring -> library)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mlops_assets"
SOURCES = sorted(
    [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "tests").rglob("*.py")]
)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_no_module_is_over_400_lines():
    long = {
        _relative(p): n
        for p in SOURCES
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_over_60_lines():
    long = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - first + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{_relative(path)}:{node.lineno} {node.name}"] = length
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """Modules of the package `path` imports, at any depth of the file (lazy imports count).
    `from package import module` is an edge to the module only: a parent package is always
    initialized first, whoever imports it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = {f"{base}.{a.name}" for a in node.names} & modules
            found |= submodules or {base}
    return {m for m in found if m.split(".")[0] == "mlops_assets"}


@pytest.fixture(scope="module")
def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {m for m in _imports(path, name, set(modules)) if m in modules and m != name}
        for name, path in modules.items()
    }


# What runs the graph sits above the wiring; everything else is library the wiring uses.
ENTRY_POINTS = (
    "mlops_assets.definitions",
    "mlops_assets.cli",
    "mlops_assets.serving_cli",  # `mlops status/serve/deploy/...`, registered by mlops_assets.cli
    "mlops_assets.api",  # `mlops api`: the control API's HTTP shell
    "mlops_assets.demo",
    "mlops_assets.testing",
)


def _layer(module: str) -> str:
    if module.startswith(ENTRY_POINTS):
        return "entry point"
    return "wiring" if module.startswith("mlops_assets.defs") else "library"


def test_the_library_never_imports_the_wiring_or_an_entry_point(import_graph):
    upward = {
        f"{name} -> {target}"
        for name, targets in import_graph.items()
        if _layer(name) == "library"
        for target in targets
        if _layer(target) != "library"
    }
    assert not upward, f"library modules import the Dagster wiring: {sorted(upward)}"


def test_no_import_cycles_between_modules(import_graph):
    """Packages' `__init__` re-exports are edges too, so a cycle through one is caught."""
    cycles = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(import_graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(import_graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, f"import cycles: {cycles}"


def test_the_environment_is_decided_in_two_places_only():
    """Settings (values per environment) and `resources_for`/`executor_for` (engines per
    environment); library code takes the interface it is given."""
    allowed = {PACKAGE / "settings.py", PACKAGE / "resources.py"}
    branching = {
        _relative(path)
        for path in PACKAGE.rglob("*.py")
        if path not in allowed
        and any(
            marker in path.read_text()
            for marker in ("Environment.PROD", "Environment.LOCAL", ".env is ", ".env == ")
        )
    }
    assert not branching, f"modules that branch on the environment: {sorted(branching)}"
