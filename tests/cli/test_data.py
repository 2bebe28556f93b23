"""``visionlab data fetch`` and ``models`` (:mod:`visionlab.cli.data`) with stand-in fetchers and registry: the
options handed on, the refusals and the lines printed, whole."""

from __future__ import annotations

from typing import Any

import pytest

from visionlab.cli import main


@pytest.fixture
def fetchers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any, dict[str, Any]]]:
    calls: list[tuple[str, Any, dict[str, Any]]] = []
    monkeypatch.setattr("visionlab.data.fetch_fashion_mnist", lambda root, **kw: calls.append(("fm", root, kw)) or "F")
    monkeypatch.setattr("visionlab.data.fetch_miniplaces", lambda root, **kw: calls.append(("mp", root, kw)) or "M")
    return calls


def test_data_fetch_passes_its_options_on(fetchers: list[tuple[str, Any, dict[str, Any]]], capsys) -> None:
    """Each dataset's fetcher gets the root and options; miniplaces falls back to MIT's and the devkit's URLs."""
    from visionlab.data.fetch import MINIPLACES_DEVKIT_URL, MINIPLACES_URL

    assert main(["data", "fetch", "fashion-mnist", "--root", "/r", "--force"]) == 0
    assert main(["data", "fetch", "fashion-mnist"]) == 0
    assert main(["data", "fetch", "miniplaces"]) == 0
    argv = ["data", "fetch", "miniplaces", "--root", "/d", "--url", "u", "--sha256", "ab", "--devkit-url", "k",
            "--force", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out == "F\nF\nM\nM\n"
    assert fetchers == [
        ("fm", "/r", dict(force=True)),
        ("fm", None, dict(force=False)),
        ("mp", None, dict(url=MINIPLACES_URL, sha256=None, devkit_url=MINIPLACES_DEVKIT_URL, force=False,
                          show_progress=True)),
        ("mp", "/d", dict(url="u", sha256="ab", devkit_url="k", force=True, show_progress=False)),
    ]  # fmt: skip


@pytest.mark.parametrize("flag", ["--url", "--sha256", "--devkit-url"])
def test_data_fetch_refuses_miniplaces_options_for_fashion_mnist(
    flag: str, fetchers: list[tuple[str, Any, dict[str, Any]]], capsys
) -> None:
    """--url, --sha256 and --devkit-url are miniplaces' only: one line naming the flag, nothing fetched."""
    assert main(["data", "fetch", "fashion-mnist", flag, "x"]) == 2
    assert capsys.readouterr().err == (
        f"visionlab: error: {flag}: only for miniplaces (fashion-mnist's sources and checksums are built in)\n"
    )
    assert fetchers == []


def test_models_lists_each_name_padded_to_twelve(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """One line per registered model: the name in 12 columns, then its summary."""
    monkeypatch.setattr("visionlab.models.list_models", lambda: {"tiny": "a small net", "averyverylongname": "b"})
    assert main(["models"]) == 0
    assert capsys.readouterr().out == "tiny         a small net\naveryverylongname b\n"
