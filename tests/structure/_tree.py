"""The source tree as the structure tests see it: package folders, their modules and their imports."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bank", "hypernet", "meta", "api")  # flow order: a package may import only those before it
PREFIX = "loragen."


def modules() -> Iterator[tuple[str, Path]]:
    """(dotted name under `loragen`, file) for every module of the product packages."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield PREFIX + ".".join(parts), path


def package_dirs() -> list[str]:
    """Every folder with an `__init__.py`, as its `loragen.` package name."""
    return sorted(PREFIX + ".".join(p.parent.relative_to(ROOT).parts)
                  for package in PACKAGES for p in (ROOT / package).rglob("__init__.py"))


def imports(path: Path, module: str) -> set[str]:
    """Absolute names `path` imports anywhere (top level or inside functions), relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found
