"""Fetching the embedded default dataset, Fashion-MNIST, with checksums verified.

Sources, in order: the official download (short timeout), then Debian's ``dataset-fashion-mnist`` package
(``apt-get download`` + ``dpkg-deb -x``, no root needed), or an already-installed copy under
``/usr/share/datasets/fashion-mnist``. Debian recompresses the ``.gz`` files, so what is verified is the SHA-256
of each file's *decompressed* IDX payload: identical for every source.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from visionlab.errors import DatasetError

__all__ = [
    "FASHION_MNIST_FILES",
    "DatasetError",
    "default_data_root",
    "fashion_mnist_dir",
    "fetch_fashion_mnist",
    "verify_fashion_mnist",
]


# file name -> SHA-256 of the decompressed IDX payload (zalandoresearch/fashion-mnist, 2017 release).
FASHION_MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
_OFFICIAL_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_DEBIAN_PACKAGE = "dataset-fashion-mnist"
_DEBIAN_DIR = Path("usr/share/datasets/fashion-mnist")


def default_data_root() -> Path:
    """``$VISIONLAB_DATA`` when set, else ``./data``."""
    return Path(os.environ.get("VISIONLAB_DATA", "data"))


def fashion_mnist_dir(root: str | Path | None = None) -> Path:
    return Path(root if root is not None else default_data_root()) / "fashion-mnist"


def _payload_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable gzip file ({exc})") from exc
    return digest.hexdigest()


def verify_fashion_mnist(directory: Path) -> None:
    """Raise :class:`DatasetError` naming the first missing or corrupt file in ``directory``."""
    for name, expected in FASHION_MNIST_FILES.items():
        path = directory / name
        if not path.is_file():
            raise DatasetError(f"{path}: missing (run `visionlab data fetch fashion-mnist`)")
        actual = _payload_sha256(path)
        if actual != expected:
            raise DatasetError(f"{path}: checksum mismatch (payload sha256 {actual}, expected {expected})")


def _log(msg: str) -> None:
    print(f"[visionlab] {msg}", file=sys.stderr, flush=True)


def _from_official(staging: Path, timeout: float) -> bool:
    for base in _OFFICIAL_URLS:
        try:
            for name in FASHION_MNIST_FILES:
                with urllib.request.urlopen(base + name, timeout=timeout) as r, open(staging / name, "wb") as f:
                    shutil.copyfileobj(r, f)
            return True
        except OSError as exc:
            _log(f"official download from {base} failed ({exc.__class__.__name__}: {exc})")
    return False


def _from_debian(staging: Path) -> bool:
    installed = Path("/") / _DEBIAN_DIR
    if all((installed / n).is_file() for n in FASHION_MNIST_FILES):
        for name in FASHION_MNIST_FILES:
            shutil.copyfile(installed / name, staging / name)
        return True
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        _log("apt-get/dpkg-deb not found: Debian fallback unavailable")
        return False
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["apt-get", "download", _DEBIAN_PACKAGE]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
        debs = sorted(Path(tmp).glob(f"{_DEBIAN_PACKAGE}_*.deb"))
        if proc.returncode != 0 or not debs:
            _log(f"`{' '.join(cmd)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
            return False
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(Path(tmp) / "x")], check=True, timeout=600)
        for name in FASHION_MNIST_FILES:
            shutil.copyfile(Path(tmp) / "x" / _DEBIAN_DIR / name, staging / name)
    return True


def fetch_fashion_mnist(root: str | Path | None = None, *, timeout: float = 5.0, force: bool = False) -> Path:
    """Make ``ROOT/fashion-mnist/`` hold the four verified IDX ``.gz`` files; return that directory.

    A verified copy is left untouched (no network). Files are fetched into a staging directory, verified, then
    moved into place, so an interrupted fetch never leaves a half-written dataset behind.
    """
    target = fashion_mnist_dir(root)
    if not force:
        try:
            verify_fashion_mnist(target)
            return target
        except DatasetError:
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as staging_name:
        staging = Path(staging_name)
        _log(f"fetching Fashion-MNIST into {target}")
        if not (_from_official(staging, timeout) or _from_debian(staging)):
            raise DatasetError(
                f"could not fetch Fashion-MNIST into {target}: the official download and Debian's "
                f"{_DEBIAN_PACKAGE} package both failed (see messages above)"
            )
        verify_fashion_mnist(staging)
        target.mkdir(parents=True, exist_ok=True)
        for name in FASHION_MNIST_FILES:
            os.replace(staging / name, target / name)
    _log(f"Fashion-MNIST ready: checksums verified in {target}")
    return target
