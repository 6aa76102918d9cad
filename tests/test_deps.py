"""dvc.yaml lists, for every stage, exactly the sfae modules its script imports.

A missing dependency makes DVC serve stale outputs after a module changes; a stale one makes
it re-run a stage for nothing. The imports are read with `ast`, transitively through other
sfae modules, including imports made inside functions.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "sfae"
SCRIPT = re.compile(r"\bpython\s+(stages/[\w/]+\.py)\b")


def module_file(src: Path, dotted: str) -> Path | None:
    """The file that defines module `dotted` under `src`, or None when it is not a module."""
    base = src.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _modules_for(dotted: str, package: str) -> list[str]:
    """`dotted` and the subpackages it runs on import, less the packages' __init__ files.

    Those are left out: test_package_inits_have_no_code keeps every one of them trivial.
    """
    parts = dotted.split(".")
    if parts[0] != package:
        return []
    return [".".join(parts[:end]) for end in range(2, len(parts) + 1)]


def sfae_imports(path: Path, src: Path, package: str = PACKAGE) -> set[Path]:
    """The package modules that `path` imports directly, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own = None  # the dotted package `path` lives in, for relative imports
    if path.is_relative_to(src):
        own = list(path.relative_to(src).with_suffix("").parts)
        if own[-1] == "__init__":
            own.pop()
        else:
            own = own[:-1]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if own is None or node.level > len(own):
                    continue
                base = own[: len(own) - node.level + 1]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            names.append(origin)
            # `from sfae import x` and `from sfae.a import b` may name submodules.
            names.extend(f"{origin}.{alias.name}" for alias in node.names if alias.name != "*")
    files = set()
    for name in names:
        for dotted in _modules_for(name, package):
            found = module_file(src, dotted)
            if found is not None and found.name != "__init__.py":
                files.add(found)
    return files


def sfae_closure(script: Path, src: Path, package: str = PACKAGE) -> set[Path]:
    """Every package module that `script` imports, directly or through other package modules."""
    seen: set[Path] = set()
    pending = [script]
    while pending:
        for found in sfae_imports(pending.pop(), src, package):
            if found not in seen:
                seen.add(found)
                pending.append(found)
    return seen


def _stages() -> dict[str, dict]:
    config = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    stages = {}
    for name, stage in config.get("stages", {}).items():
        stage = stage.get("do", stage)  # a foreach stage keeps its definition under `do`
        cmd = stage.get("cmd", "")
        cmd = " ".join(cmd) if isinstance(cmd, list) else cmd
        if SCRIPT.search(cmd):
            stages[name] = stage
    return stages


STAGES = _stages()


def _deps(stage: dict) -> list[str]:
    return [dep if isinstance(dep, str) else next(iter(dep)) for dep in stage.get("deps", [])]


def test_dvc_yaml_has_python_stages():
    assert STAGES, "no stage in dvc.yaml runs `python stages/NAME.py`"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_depends_on_exactly_the_modules_it_imports(name):
    stage = STAGES[name]
    cmd = stage["cmd"]
    scripts = SCRIPT.findall(" ".join(cmd) if isinstance(cmd, list) else cmd)
    deps = _deps(stage)
    missing = [script for script in scripts if script not in deps]
    imported: set[str] = set()
    for script in scripts:
        path = ROOT / script
        assert path.is_file(), f"stage {name}: {script} does not exist"
        imported |= {found.relative_to(ROOT).as_posix() for found in sfae_closure(path, SRC)}
    missing += sorted(imported - set(deps))
    assert not missing, f"stage {name} misses deps: {', '.join(missing)}"
    listed = {dep for dep in deps if dep.startswith(f"src/{PACKAGE}/") and dep.endswith(".py")}
    stale = sorted(listed - imported)
    assert not stale, f"stage {name} lists modules it does not import: {', '.join(stale)}"


@pytest.mark.parametrize(
    "init", sorted(p.relative_to(SRC).as_posix() for p in (SRC / PACKAGE).rglob("__init__.py"))
)
def test_package_inits_have_no_code(init):
    """Package __init__.py files run on every import but are left out of deps: docstrings only."""
    tree = ast.parse((SRC / init).read_text(encoding="utf-8"))
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    assert not body, f"src/{init} has code; add it to every stage's deps"


def test_imports_are_found_inside_functions_transitively_and_in_subpackages(tmp_path):
    src = tmp_path / "src"
    package = src / "fakepkg"
    (package / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": '"""Fake."""\n',
        "a.py": "import os\n\n\ndef f():\n    import fakepkg.b\n    return fakepkg.b, os\n",
        "b.py": "from fakepkg import c\n",
        "c.py": "from .sub import d\nfrom fakepkg.e import VALUE\n",
        "e.py": "VALUE = 1\n",
        "unused.py": "import fakepkg.a\n",
        "sub/__init__.py": "",
        "sub/d.py": "def g():\n    from fakepkg import missing_name  # not a module\n",
    }
    for relative, text in sources.items():
        (package / relative).write_text(text, encoding="utf-8")
    script = tmp_path / "stages" / "run.py"
    script.parent.mkdir()
    script.write_text("from fakepkg.a import f\n", encoding="utf-8")

    assert sfae_imports(script, src, "fakepkg") == {package / "a.py"}
    assert sfae_imports(package / "a.py", src, "fakepkg") == {package / "b.py"}
    expected = {"a.py", "b.py", "c.py", "e.py", "sub/d.py"}
    assert sfae_closure(script, src, "fakepkg") == {package / name for name in expected}
