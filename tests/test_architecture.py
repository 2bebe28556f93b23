"""The package's architecture, checked: the floors of pyproject.toml's import-linter contract (nothing imports
upward), no private name crossing a module boundary, short functions, and a trainer module that holds only the
loop. A change that breaks one fails here, naming the module and line, instead of growing a knot silently."""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "visionlab"
MAX_FUNCTION_LINES = 60


def _modules() -> list[tuple[str, Path, ast.Module]]:
    """``(dotted name, path, syntax tree)`` of every module under src/visionlab."""
    return _parsed(PACKAGE, SRC)


@functools.cache
def _parsed(package: Path, src: Path) -> list[tuple[str, Path, ast.Module]]:
    """The modules of ``package`` (under ``src``), parsed once per process and per package."""
    found = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name, path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))))
    return found


def _imported_module(node: ast.ImportFrom, module: str, path: Path) -> str:
    """The absolute module an ``from X import ...`` reads from (relative imports resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_imports() -> list[str]:
    """``path:line: module imports NAME from other`` for every underscore name (dunders aside) imported from
    another visionlab module."""
    found = []
    for module, path, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _imported_module(node, module, path)
            if source.split(".")[0] != "visionlab" or source == module:
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module} imports {alias.name} from {source}")
    return found


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line: name (N lines)`` for every function or method in src/ whose body runs over ``limit`` lines
    (from its ``def`` line to its last line; decorators not counted)."""
    found = []
    for _, path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} ({lines} lines)")
    return found


def test_the_layer_contract_of_pyproject_is_kept() -> None:
    """import-linter's ``layers`` contract ([tool.importlinter] in pyproject.toml), run on this checkout's src/."""
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.is_file(), f"{lint} missing: import-linter is in the dev extra (pip install -e '.[dev]')"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [str(lint), "--no-cache", "--no-logo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_no_module_imports_a_private_name_from_another() -> None:
    assert private_imports() == []


def test_no_function_is_over_60_lines() -> None:
    assert long_functions() == []


def test_the_trainer_module_holds_only_the_loop() -> None:
    lines = len((PACKAGE / "engine" / "trainer.py").read_text(encoding="utf-8").splitlines())
    assert lines < 400, f"engine/trainer.py has {lines} lines"


def test_the_checks_find_what_they_look_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two ast walks on a package made for them: a private name from another module is found (a relative
    import resolved), one from the module itself and a dunder are not; a 61-line function is, a 60-line one not."""
    package = tmp_path / "src" / "visionlab"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from ._impl import _hidden\nfrom visionlab.sub import __all__\n")
    body = "\n".join(f"    x = {i}" for i in range(59))
    (package / "sub" / "_impl.py").write_text(
        f"from visionlab.sub._impl import _self\n\n\ndef short():\n{body}\n\n\ndef long():\n{body}\n    x = 59\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "src")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert private_imports() == [
        "src/visionlab/sub/__init__.py:1: visionlab.sub imports _hidden from visionlab.sub._impl"
    ]
    assert long_functions() == ["src/visionlab/sub/_impl.py:66: long (61 lines)"]
