"""Fashion-MNIST fetching: verification by payload checksum, sources tried in order, idempotence, no partial
results. The sources are replaced by fakes: nothing here touches the network or apt."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import pytest

from visionlab.data import DatasetError, fetch_fashion_mnist, load_dataset, verify_fashion_mnist
from visionlab.data import fetch as fetch_module

from .conftest import IdxSet

NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture
def source(fashion_mnist: IdxSet, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tiny IDX files standing in for the real ones, their payload checksums registered as the expected ones."""
    sums = {n: hashlib.sha256(gzip.decompress((fashion_mnist.root / n).read_bytes())).hexdigest() for n in NAMES}
    monkeypatch.setattr(fetch_module, "FASHION_MNIST_FILES", sums)
    return fashion_mnist.root


class FakeSources:
    """Stand-ins for ``_from_official`` and ``_from_debian`` that record their calls."""

    def __init__(self, source: Path, official_works: bool, debian_works: bool = True) -> None:
        self.source, self.official_works, self.debian_works = source, official_works, debian_works
        self.calls: list[str] = []

    def _copy(self, staging: Path) -> None:
        for name in NAMES:
            shutil.copyfile(self.source / name, staging / name)

    def official(self, staging: Path, timeout: float) -> bool:
        self.calls.append("official")
        if self.official_works:
            self._copy(staging)
        return self.official_works

    def debian(self, staging: Path) -> bool:
        self.calls.append("debian")
        if self.debian_works:
            self._copy(staging)
        return self.debian_works

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeSources:
        monkeypatch.setattr(fetch_module, "_from_official", self.official)
        monkeypatch.setattr(fetch_module, "_from_debian", self.debian)
        return self


def _same_files(a: Path, b: Path) -> bool:
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in NAMES)


def test_verify_accepts_matching_payloads_whatever_the_compression(source: Path, tmp_path: Path) -> None:
    verify_fashion_mnist(source)
    recompressed = tmp_path / "recompressed"  # Debian recompresses: only the payload checksum counts
    recompressed.mkdir()
    for name in NAMES:
        (recompressed / name).write_bytes(gzip.compress(gzip.decompress((source / name).read_bytes()), 1))
    verify_fashion_mnist(recompressed)


def test_verify_names_the_bad_file(source: Path) -> None:
    bad = source / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x00"))
    with pytest.raises(DatasetError, match="checksum mismatch") as info:
        verify_fashion_mnist(source)
    assert str(info.value).startswith(f"{bad}: checksum mismatch")
    bad.write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match="not a readable gzip file") as info:
        verify_fashion_mnist(source)
    assert str(info.value).startswith(f"{bad}: ")
    bad.unlink()
    with pytest.raises(DatasetError, match="missing") as info:
        verify_fashion_mnist(source)
    assert str(info.value).startswith(f"{bad}: missing")


def test_verify_with_the_real_checksums_rejects_other_files(fashion_mnist: IdxSet) -> None:
    with pytest.raises(DatasetError, match="checksum mismatch") as info:
        verify_fashion_mnist(fashion_mnist.root)  # tiny random files, the real (unpatched) checksums
    assert str(info.value).startswith(str(fashion_mnist.root / "train-images-idx3-ubyte.gz"))


def test_fetch_falls_back_to_debian_then_is_idempotent(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeSources(source, official_works=False).install(monkeypatch)
    target = fetch_fashion_mnist(tmp_path / "root")
    assert target == tmp_path / "root" / "fashion-mnist" and fake.calls == ["official", "debian"]
    assert sorted(p.name for p in target.iterdir()) == sorted(NAMES) and _same_files(source, target)
    assert [p.name for p in (tmp_path / "root").iterdir()] == ["fashion-mnist"]  # staging directory removed
    assert fetch_fashion_mnist(tmp_path / "root") == target
    assert fake.calls == ["official", "debian"]  # a verified copy: nothing fetched again


def test_fetch_uses_official_when_it_works(tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSources(source, official_works=True).install(monkeypatch)
    target = fetch_fashion_mnist(tmp_path / "root")
    assert fake.calls == ["official"] and _same_files(source, target)
    fetch_fashion_mnist(tmp_path / "root", force=True)
    assert fake.calls == ["official", "official"]  # force re-fetches


def test_fetch_replaces_a_corrupt_copy(tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "root" / "fashion-mnist"
    target.mkdir(parents=True)
    for name in NAMES:
        shutil.copyfile(source / name, target / name)
    (target / NAMES[1]).write_bytes(gzip.compress(b"damaged"))
    fake = FakeSources(source, official_works=True).install(monkeypatch)
    fetch_fashion_mnist(tmp_path / "root")
    assert fake.calls == ["official"] and _same_files(source, target)


def test_failed_verification_leaves_nothing_behind(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def corrupt(staging: Path, timeout: float) -> bool:
        for name in NAMES:  # flip one bit of each payload
            data = gzip.decompress((source / name).read_bytes())
            (staging / name).write_bytes(gzip.compress(data[:-1] + bytes([data[-1] ^ 1])))
        return True

    monkeypatch.setattr(fetch_module, "_from_official", corrupt)
    with pytest.raises(DatasetError, match="checksum mismatch"):
        fetch_fashion_mnist(tmp_path / "root")
    target = tmp_path / "root" / "fashion-mnist"
    assert not target.exists() or not any(target.iterdir())
    assert [p for p in (tmp_path / "root").iterdir() if p.name.startswith(".fetch")] == []


def test_both_sources_failing_is_a_clear_error(tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSources(source, official_works=False, debian_works=False).install(monkeypatch)
    with pytest.raises(DatasetError, match="both failed"):
        fetch_fashion_mnist(tmp_path / "root")
    assert fake.calls == ["official", "debian"]
    assert not (tmp_path / "root" / "fashion-mnist").exists()


def test_load_dataset_fetches_the_default_into_the_data_root(
    tmp_path: Path, source: Path, fashion_mnist: IdxSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeSources(source, official_works=False).install(monkeypatch)
    bundle = load_dataset("fashion-mnist", data_root=tmp_path / "root")
    assert bundle.root == str(tmp_path / "root" / "fashion-mnist") and fake.calls == ["official", "debian"]
    assert (len(bundle.train), len(bundle.val), bundle.num_classes) == (6, 4, 10)
    assert bundle.val[0][1] == fashion_mnist.test_y[0]
    monkeypatch.setenv("VISIONLAB_DATA", str(tmp_path / "root"))  # the default root, already verified
    assert load_dataset("fmnist").root == bundle.root and fake.calls == ["official", "debian"]


def test_the_data_root_comes_from_the_environment_or_defaults_to_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONLAB_DATA", "/somewhere/else")
    assert fetch_module.fashion_mnist_dir() == Path("/somewhere/else/fashion-mnist")
    assert fetch_module.fashion_mnist_dir("mine") == Path("mine/fashion-mnist")
    assert fetch_module.miniplaces_dir() == Path("/somewhere/else/miniplaces")
    assert fetch_module.miniplaces_dir("mine") == Path("mine/miniplaces")
    monkeypatch.delenv("VISIONLAB_DATA")
    assert fetch_module.fashion_mnist_dir() == Path("data/fashion-mnist")
    assert fetch_module.miniplaces_dir() == Path("data/miniplaces")


class RecordingSources(FakeSources):
    """Also records the staging folder and the timeout the official source is given."""

    def official(self, staging: Path, timeout: float) -> bool:
        self.seen = (staging, staging.is_dir(), timeout)
        return super().official(staging, timeout)


@pytest.mark.parametrize("timeout", [None, 2.5])
def test_fetch_stages_beside_the_target_logs_and_passes_the_timeout(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, timeout: float | None
) -> None:
    """A root whose parents do not exist yet; staging in ``ROOT/.fetch-*`` (the same file system as the target, so
    the final renames are atomic); the official source gets the timeout (5 s by default)."""
    fake = RecordingSources(source, official_works=True).install(monkeypatch)
    root = tmp_path / "a" / "b"
    kwargs = {} if timeout is None else {"timeout": timeout}
    target = fetch_fashion_mnist(root, **kwargs)
    staging, existed, given = fake.seen
    assert staging.parent == root and staging.name.startswith(".fetch-") and existed
    assert given == (5.0 if timeout is None else timeout) and _same_files(source, target)
    assert capsys.readouterr().err == (
        f"[visionlab] fetching Fashion-MNIST into {target}\n"
        f"[visionlab] Fashion-MNIST ready: checksums verified in {target}\n"
    )
