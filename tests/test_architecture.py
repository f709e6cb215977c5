"""The import rules of docs/ARCHITECTURE.md, checked on the source (ast) of every module of overfocus/.

Each rule names the modules it constrains and the modules they must never import (directly, at
any place in the file, function-local imports included). A test per rule, so a broken rule says
which one; `test_rule_checker_sees_a_broken_rule` shows the checker can fail.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterable, List, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "overfocus"
CLI = ("overfocus.cli", "overfocus.commands")
# the only modules at the top of overfocus/ (docs/ARCHITECTURE.md): everything else lives in a package
TOP_LEVEL = {"__init__", "__main__", "cli", "registry", "config", "errors", "fileio", "progress", "device",
             "distributed", "versions"}
PACKAGES = {"analysis", "attribution", "audit", "checkpoint", "commands", "data", "integrations", "metrics",
            "models", "regularizers", "render", "runs", "training"}

# (rule id, modules it constrains, modules they must not import, modules exempt from it)
RULES: List[Tuple[str, Tuple[str, ...], Tuple[str, ...], Tuple[str, ...]]] = [
    ("render never imports models, training or attribution", ("overfocus.render",),
     ("overfocus.models", "overfocus.training", "overfocus.attribution"), ()),
    ("analysis and audit never import training", ("overfocus.analysis", "overfocus.audit"), ("overfocus.training",),
     ()),
    ("the library never imports the CLI", ("overfocus",), CLI, ("overfocus.cli", "overfocus.__main__",
                                                                "overfocus.commands")),
    ("data never imports runs or analysis", ("overfocus.data",), ("overfocus.runs", "overfocus.analysis"), ()),
    ("checkpoint never imports training or analysis", ("overfocus.checkpoint",),
     ("overfocus.training", "overfocus.analysis"), ()),
]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool) -> Set[str]:
    """Absolute names of every module an ast of `source` imports (`from X import y` gives X and X.y)."""
    package = module if is_package else module.rpartition(".")[0]
    out: Set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names)
    return out


def within(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def all_imports(root: Path = PACKAGE) -> Dict[str, Set[str]]:
    return {module_name(p, root): imported_modules(p.read_text(), module_name(p, root), p.name == "__init__.py")
            for p in sorted(root.rglob("*.py"))}


def violations(imports: Dict[str, Set[str]], scope, forbidden, exempt) -> List[str]:
    return sorted(f"{mod} imports {name}" for mod, names in imports.items()
                  if within(mod, scope) and not within(mod, exempt)
                  for name in names if within(name, forbidden))


IMPORTS = all_imports()


@pytest.mark.parametrize("rule", RULES, ids=[r[0] for r in RULES])
def test_import_rule(rule):
    _name, scope, forbidden, exempt = rule
    assert violations(IMPORTS, scope, forbidden, exempt) == []


def test_rule_checker_sees_a_broken_rule(tmp_path):
    pkg = tmp_path / "overfocus"
    (pkg / "render").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "render" / "__init__.py").write_text("")
    (pkg / "render" / "io.py").write_text("def f():\n    from ..models import build_model\n")
    (pkg / "data.py").write_text("from .runs import rundir\n")
    imports = all_imports(pkg)
    assert violations(imports, *RULES[0][1:]) == ["overfocus.render.io imports overfocus.models",
                                                  "overfocus.render.io imports overfocus.models.build_model"]
    assert violations(imports, *RULES[3][1:]) == ["overfocus.data imports overfocus.runs",
                                                  "overfocus.data imports overfocus.runs.rundir"]


def test_every_module_is_seen():
    assert {"overfocus.analysis.core", "overfocus.audit.flow", "overfocus.render.io", "overfocus.data.human",
            "overfocus.runs.writer", "overfocus.training.hooks", "overfocus.checkpoint.files"} <= set(IMPORTS)


def test_nothing_at_the_top_but_the_listed_modules():
    """A new module goes into the package of its job (runs/, training/, checkpoint/, ...), not beside cli.py."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules - TOP_LEVEL == set(), "move these into a package (docs/ARCHITECTURE.md)"
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages == PACKAGES


def test_every_package_says_what_it_holds():
    """Each package's __init__.py opens with a docstring naming its modules' jobs."""
    for name in sorted(PACKAGES):
        assert ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text())), name
