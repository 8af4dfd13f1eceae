"""The README's code layout names every folder and module of the package, and every top-level
folder of the repository, so the map a newcomer reads agrees with the tree."""

import re

from mlops_assets.settings import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "mlops_assets"


def _layout_block() -> str:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("### Code layout", 1)[1]
    return re.search(r"```\n(.*?)```", section, re.S).group(1)


def _names_in_layout() -> set[str]:
    """Each line's first word, with the folders above it (indentation is nesting)."""
    names, parents = set(), []
    for line in _layout_block().splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        word = line.split()[0]
        parents = [*parents[:depth], word.rstrip("/")]
        names.add("/".join(parents) + ("/" if word.endswith("/") else ""))
    return names


def test_the_layout_lists_every_package_folder_and_top_level_module():
    names = _names_in_layout()
    expected = {
        f"mlops_assets/{p.relative_to(PACKAGE)}/"
        for p in PACKAGE.rglob("*")
        if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py"))
    } | {f"mlops_assets/{p.name}" for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    missing = sorted(expected - names)
    assert not missing, f"README layout lacks: {missing}"


def test_the_layout_names_only_what_exists():
    stale = sorted(
        name for name in _names_in_layout() if not (PROJECT_ROOT / name.rstrip("/")).exists()
    )
    assert not stale, f"README layout names what is not in the tree: {stale}"
