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


def test_data_synth_passes_its_options_on_and_says_where_the_set_is(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Defaults: the real set's 100,000 / 10,000 images of 100 classes, seed 0, quality 90, one process."""
    calls: list[tuple[Any, dict[str, Any]]] = []

    def synth(root: Any, **kw: Any) -> tuple[str, int]:
        calls.append((root, kw))
        return root, 7

    monkeypatch.setattr("visionlab.data.synth_miniplaces", synth)
    assert main(["data", "synth", "miniplaces", "--root", "/d"]) == 0
    argv = ["data", "synth", "miniplaces", "--root", "/e", "--train", "24", "--val", "12", "--classes", "4",
            "--seed", "3", "--quality", "75", "-j", "2", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert calls == [
        ("/d", dict(train=100_000, val=10_000, classes=100, seed=0, quality=90, workers=1, show_progress=True)),
        ("/e", dict(train=24, val=12, classes=4, seed=3, quality=75, workers=2, show_progress=False)),
    ]
    assert capsys.readouterr().out == (
        "/d: 100000 train / 10000 val images (7 written now); train on it with --data miniplaces:/d\n"
        "/e: 24 train / 12 val images (7 written now); train on it with --data miniplaces:/e\n"
    )


def test_data_synth_writes_a_set_the_reader_takes(tmp_path, capsys) -> None:
    root = tmp_path / "mp"
    argv = ["data", "synth", "miniplaces", "--root", str(root), "--train", "8", "--val", "4", "--classes", "4",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out == f"{root}: 8 train / 4 val images (12 written now); train on it with " \
        f"--data miniplaces:{root}\n"  # fmt: skip
    assert main(argv) == 0  # again: complete already, nothing written
    assert "(0 written now)" in capsys.readouterr().out
    from visionlab.data import load_dataset

    assert len(load_dataset(f"miniplaces:{root}").train) == 8


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--train", "0"], "--train: must be an integer >= 1, got 0"),
        (["--val", "0"], "--val: must be an integer >= 1, got 0"),
        (["--quality", "0"], "--quality: must be an integer >= 1, got 0"),
        (["--quality", "101"], "--quality: must be an integer in [1, 100], got 101"),
        (["--classes", "101"], "--classes: must be at most 100 (MiniPlaces' labels), got 101"),
        (["--train", "50", "--classes", "60"], "--train: must be >= classes (60): every class needs a training "
                                               "image, got 50"),
        (["--seed", "-1"], "--seed: must be an integer >= 0, got -1"),
        (["-j", "0"], "-j/--workers: must be an integer >= 1, got 0"),
    ],
)  # fmt: skip
def test_data_synth_refuses_bad_settings_with_one_line_naming_the_flag(tmp_path, flags: list[str], message: str,
                                                                       capsys) -> None:  # fmt: skip
    root = tmp_path / "mp"
    assert main(["data", "synth", "miniplaces", "--root", str(root), *flags]) == 2
    assert capsys.readouterr().err == f"visionlab: error: {message}\n"
    assert not root.exists()


def test_data_synth_refuses_a_folder_of_someone_elses_files(tmp_path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["data", "synth", "miniplaces", "--root", str(tmp_path), "--train", "8", "--classes", "4"]) == 2
    assert capsys.readouterr().err == (
        f"visionlab: error: --root: {tmp_path} is not empty and holds no synthetic MiniPlaces (synth.json); refusing "
        "to write into it (give an empty or new folder)\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
