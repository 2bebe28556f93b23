"""The stable Python API, ``visionlab.__all__``: every name importable from ``visionlab`` and documented, the list
sorted and unique, loaded lazily (``import visionlab`` imports no torch), and every name in the API reference."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import visionlab

ROOT = Path(__file__).resolve().parents[1]
INIT = ROOT / "src" / "visionlab" / "__init__.py"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}  # this checkout's package in the interpreters started here


def isort_key(name: str) -> tuple[int, str]:
    """The order of every ``__all__`` in visionlab (ruff's RUF022): CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def type_checking_imports() -> dict[str, str]:
    """``{name: module}`` of the imports under ``if TYPE_CHECKING:`` in ``visionlab/__init__.py`` (``typing`` left
    out): what static readers (type checkers, the API reference) see."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", None) == "TYPE_CHECKING")
    return {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom) and node.module != "typing"
        for alias in node.names
    }


def test_all_is_sorted_and_unique() -> None:
    assert len(set(visionlab.__all__)) == len(visionlab.__all__)
    assert visionlab.__all__ == sorted(visionlab.__all__, key=isort_key)


@pytest.mark.parametrize("name", visionlab.__all__)
def test_each_public_name_is_its_subpackages_object(name: str) -> None:
    """``visionlab.NAME`` is the very object its subpackage exports (not a copy, not a wrapper)."""
    module = type_checking_imports()[name]
    assert getattr(visionlab, name) is getattr(importlib.import_module(module), name)
    assert name in importlib.import_module(module).__all__


@pytest.mark.parametrize("name", visionlab.__all__)
def test_each_public_name_has_its_own_docstring(name: str) -> None:
    obj = getattr(visionlab, name)
    doc = obj.__doc__ or ""
    # A dataclass without a docstring gets its signature as __doc__: that is no documentation.
    assert doc.strip() and not doc.startswith(f"{name}("), f"visionlab.{name} has no docstring"


def test_lazy_exports_are_the_type_checking_imports() -> None:
    """The names ``__getattr__`` resolves, the ``TYPE_CHECKING`` imports and ``__all__`` are the same set, each name
    from the same module: a name added to one and not the others fails here."""
    lazy = {name: module for module, names in visionlab._EXPORTS.items() for name in names}
    assert lazy == type_checking_imports()
    assert sorted(lazy, key=isort_key) == visionlab.__all__


def test_an_unknown_name_raises_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match=r"module 'visionlab' has no attribute 'PGDD'"):
        visionlab.PGDD  # noqa: B018
    assert not hasattr(visionlab, "_private")


def test_a_public_name_is_imported_on_first_read_and_then_kept_in_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first read of ``visionlab.PGD`` imports its subpackage (PEP 562 ``__getattr__``) and keeps the very object
    in the module's namespace, so every later read is a plain attribute lookup of it."""
    from visionlab.robustness import PGD

    monkeypatch.delitem(vars(visionlab), "PGD", raising=False)  # as before its first read
    assert visionlab.PGD is PGD and vars(visionlab)["PGD"] is PGD and visionlab.PGD is PGD


def test_dir_lists_every_public_name_before_it_is_loaded() -> None:
    assert set(visionlab.__all__) <= set(dir(visionlab))


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` (with this checkout's ``src`` first)."""
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=ENV).stdout
    return set(out.split())


def test_importing_visionlab_imports_neither_torch_nor_its_subpackages() -> None:
    loaded = loaded_after("import visionlab")
    assert "visionlab" in loaded
    assert not {"torch", "matplotlib", "torchattacks", "visionlab.models", "visionlab.engine"} & loaded


def test_using_an_attack_loads_only_what_it_needs() -> None:
    """``visionlab.PGD`` imports torch and the robustness package, not the optional torchattacks (AutoAttack imports
    it when built) nor the report's matplotlib."""
    loaded = loaded_after("import visionlab\nvisionlab.PGD")
    assert {"torch", "visionlab.robustness"} <= loaded
    assert not {"torchattacks", "matplotlib.pyplot", "visionlab.report"} & loaded


def test_python_m_visionlab_help_still_works() -> None:
    result = subprocess.run([sys.executable, "-m", "visionlab", "--help"], capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: visionlab")


def test_the_api_reference_documents_every_public_name() -> None:
    """docs/api/index.md has one ``::: path`` entry per name of ``__all__`` (``saliency`` at its definition, which
    the reference's static reader cannot reach through ``visionlab.explain.saliency``, the module of that name)."""
    entries = re.findall(r"^::: (\S+)$", (ROOT / "docs" / "api" / "index.md").read_text(encoding="utf-8"), re.M)
    documented = [e.rsplit(".", 1)[-1] for e in entries if e != "visionlab"]
    assert sorted(documented) == sorted(visionlab.__all__)
    for entry in entries:  # each path names the object itself
        module, _, name = entry.rpartition(".")
        if module:
            assert getattr(importlib.import_module(module), name) is getattr(visionlab, name)


def test_the_module_docstring_names_every_public_name() -> None:
    doc = inspect.getdoc(visionlab) or ""
    missing = [name for name in visionlab.__all__ if f"`{name}`" not in doc and f"vl.{name}(" not in doc]
    assert not missing, f"visionlab's docstring does not mention {missing}"
