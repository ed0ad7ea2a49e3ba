"""The medae source files a stage runs: the static import closure of its module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Not stage code: schemas (values are DVC params), the registry, the CLI, error types.
NOT_CODE = {"medae/__init__.py", "medae/config.py", "medae/config_base.py",
            "medae/errors.py", "medae/cli.py", "medae/stages.py"}


def module_file(module: str) -> Path | None:
    base = ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """medae modules imported anywhere in ``path`` (including lazy imports in functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medae"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("medae"))
    return found


def code_closure(module: str) -> set[str]:
    """Repository-relative paths of every medae file ``module`` runs, transitively."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        path = module_file(todo.pop())
        if path is None:
            continue
        rel = path.relative_to(ROOT).as_posix()
        if rel in seen:
            continue
        seen.add(rel)
        todo.extend(imported_modules(path))
    return {p for p in seen if p not in NOT_CODE and not p.endswith(("__init__.py",
                                                                      "/config.py"))}


if __name__ == "__main__":
    from medae.stages import registry

    for stage, target in registry().items():
        print(stage, sorted(code_closure(target.partition(":")[0])))
