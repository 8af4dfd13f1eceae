"""Import Feast without typeguard's import-time instrumentation.

Feast decorates its definition classes with typeguard's `@typechecked`, which reads and recompiles the
source of every method when the module is imported: about 3 of the 5 s `import feast` takes on these
machines, paid again by every process that touches features (run workers, KFP steps, the model
server, the CLI, each test worker). In processes that import `mlops_assets` first, this finder makes
`@typechecked` a no-op while Feast's own modules execute; nothing else in the environment uses
typeguard. The definitions in `feature_repo/` still meet Feast's checks where users meet them: the
`feast` CLI is its own process and runs them instrumented (tests/cli/test_feast_cli.py).
`MLOPS_FEAST_TYPECHECKS=1` keeps the instrumentation everywhere.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from typing import Any


def _uninstrumented(target: Any = None, **_options: Any) -> Any:
    return (lambda decorated: decorated) if target is None else target


class _FeastFinder(importlib.abc.MetaPathFinder):
    """Finds `feast` and its submodules like the default path finder, and runs their code with
    typeguard's decorator replaced (restored afterwards, also when the import fails)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "feast" and not fullname.startswith("feast."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_module(module: Any) -> None:
            import typeguard

            previous = typeguard.typechecked
            typeguard.typechecked = _uninstrumented
            try:
                execute(module)
            finally:
                typeguard.typechecked = previous

        loader.exec_module = exec_module  # this spec's own loader instance; its type is unchanged
        return spec


def install() -> None:
    """Once per process, before anything imports Feast (a no-op once it has been imported)."""
    if os.environ.get("MLOPS_FEAST_TYPECHECKS") == "1" or "feast" in sys.modules:
        return
    if not any(isinstance(finder, _FeastFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FeastFinder())
