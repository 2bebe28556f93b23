"""Fashion-MNIST fetching: verification by payload checksum, sources tried in order, no partial results."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import pytest

from visionlab.data import DatasetError, fetch_fashion_mnist, verify_fashion_mnist
from visionlab.data import fetch as fetch_module

from ..conftest import make_fashion_mnist


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tiny IDX files standing in for the real ones, with their payload checksums registered."""
    src = make_fashion_mnist(tmp_path / "src", n_train=8, n_test=4)
    sums = {p.name: hashlib.sha256(gzip.decompress(p.read_bytes())).hexdigest() for p in src.iterdir()}
    monkeypatch.setattr(fetch_module, "FASHION_MNIST_FILES", sums)
    return src


def test_fetch_falls_back_verifies_and_is_idempotent(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def official(staging: Path, timeout: float) -> bool:
        calls.append("official")
        return False

    def debian(staging: Path) -> bool:
        calls.append("debian")
        for p in source.iterdir():
            shutil.copyfile(p, staging / p.name)
        return True

    monkeypatch.setattr(fetch_module, "_from_official", official)
    monkeypatch.setattr(fetch_module, "_from_debian", debian)
    target = fetch_fashion_mnist(tmp_path / "root")
    assert target == tmp_path / "root" / "fashion-mnist" and calls == ["official", "debian"]
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in source.iterdir())
    fetch_fashion_mnist(tmp_path / "root")
    assert calls == ["official", "debian"]  # verified copy: nothing fetched again


def test_corrupt_download_leaves_nothing_behind(tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def corrupt(staging: Path, timeout: float) -> bool:
        for p in source.iterdir():
            data = gzip.decompress(p.read_bytes())
            (staging / p.name).write_bytes(gzip.compress(data[:-1] + bytes([data[-1] ^ 1])))
        return True

    monkeypatch.setattr(fetch_module, "_from_official", corrupt)
    with pytest.raises(DatasetError, match="checksum mismatch"):
        fetch_fashion_mnist(tmp_path / "root")
    target = tmp_path / "root" / "fashion-mnist"
    assert not target.exists() or not any(target.iterdir())
    assert [p.name for p in (tmp_path / "root").iterdir() if p.name.startswith(".fetch")] == []


def test_verify_names_the_bad_file(tmp_path: Path, source: Path) -> None:
    verify_fashion_mnist(source)
    (source / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x00"))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz: checksum mismatch"):
        verify_fashion_mnist(source)
    (source / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz: missing"):
        verify_fashion_mnist(source)


def test_both_sources_failing_is_a_clear_error(tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module, "_from_official", lambda staging, timeout: False)
    monkeypatch.setattr(fetch_module, "_from_debian", lambda staging: False)
    with pytest.raises(DatasetError, match="both failed"):
        fetch_fashion_mnist(tmp_path / "root")
