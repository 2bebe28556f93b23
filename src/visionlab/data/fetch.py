"""Fetching datasets, verified: Fashion-MNIST (the embedded default) and MiniPlaces.

Fashion-MNIST sources, in order: the official download (short timeout), then Debian's ``dataset-fashion-mnist``
package (``apt-get download`` + ``dpkg-deb -x``, no root needed), or an already-installed copy under
``/usr/share/datasets/fashion-mnist``. Debian recompresses the ``.gz`` files, so what is verified is the SHA-256
of each file's *decompressed* IDX payload: identical for every source.

MiniPlaces: one archive of images (MIT CSAIL's ``data.tar.gz``: ``images/{train,val,test}/``, ``objects/``), plus
the development kit's list files (``train.txt``, ``val.txt``, ``categories.txt``) where the archive has none.
The download resumes, the archive's SHA-256 is checked when one is given, and the result is unpacked and checked
in a staging directory before it replaces anything (:mod:`visionlab.data.download`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from visionlab.data.download import DEFAULT_TIMEOUT, download, safe_extract, sha256_file, verify_sha256
from visionlab.data.lists import MINIPLACES_CLASSES, parse_list_file
from visionlab.errors import ConfigError, DatasetError

__all__ = [
    "FASHION_MNIST_FILES",
    "MINIPLACES_DEVKIT_URL",
    "MINIPLACES_SHA256",
    "MINIPLACES_URL",
    "DatasetError",
    "default_data_root",
    "fashion_mnist_dir",
    "fetch_fashion_mnist",
    "fetch_miniplaces",
    "miniplaces_dir",
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

# The MiniPlaces challenge archive, as linked from the development kit's README
# (https://github.com/CSAILVision/miniplaces, "1. Overview of challenge dataset"): 100,000 train, 10,000 val and
# 10,000 test JPEGs at 128x128 under images/ (the kit's own scripts read data/images/), object annotations under
# objects/. The README gives no size or checksum for it and none was found elsewhere (a third-party course loader
# pins MD5 265825ec94f79390e4f1e38045a69059, not checked here), so by default only the size the server announces
# is checked; a SHA-256 given by the user verifies the content.
MINIPLACES_URL = "http://miniplaces.csail.mit.edu/data/data.tar.gz"
MINIPLACES_SHA256: str | None = None
# The list files live in the kit's data/ folder (scripts that use the archive fetch them from there): train.txt and
# val.txt with "train/a/abbey/00000001.jpg 0" lines relative to images/, categories.txt with "/a/abbey 0".
MINIPLACES_DEVKIT_URL = "https://raw.githubusercontent.com/CSAILVision/miniplaces/master/data/"
_MINIPLACES_LISTS = ("train.txt", "val.txt", "categories.txt")  # the last one optional
_FETCHED = "fetched.json"  # written last into a fetched MiniPlaces folder: where it came from, its size and hash


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


def miniplaces_dir(root: str | Path | None = None) -> Path:
    return Path(root if root is not None else default_data_root()) / "miniplaces"


def fetch_miniplaces(
    root: str | Path | None = None,
    *,
    url: str = MINIPLACES_URL,
    sha256: str | None = MINIPLACES_SHA256,
    devkit_url: str = MINIPLACES_DEVKIT_URL,
    timeout: float = DEFAULT_TIMEOUT,
    force: bool = False,
    show_progress: bool = True,
) -> Path:
    """Make ``ROOT/miniplaces/`` the layout ``miniplaces:PATH`` reads (``train.txt``, ``val.txt``, ``images/``,
    ``categories.txt``); return that directory.

    Args:
        root: the data root (default ``$VISIONLAB_DATA`` or ``./data``).
        url: a tar archive (any compression) holding ``images/`` at its top or in its one top folder, with or
            without the list files beside it.
        sha256: the archive's expected SHA-256 (none is published for the default archive: then only its announced
            size is checked, and the actual hash is logged so the next fetch can pin it).
        devkit_url: where the list files missing from the archive are fetched (``devkit_url + "train.txt"``).
        timeout: seconds for each connection and read.
        force: fetch and unpack again even if ``ROOT/miniplaces`` was fetched before.

    Why it is safe to interrupt or repeat: the archive is downloaded to ``ROOT/miniplaces-*.part`` and resumed from
    there; it is verified, unpacked, and its list files checked against the images (every listed image exists,
    every label in [0, 100)) in a staging directory under ``ROOT`` before one rename puts it in place. A folder
    visionlab did not fetch is never replaced; a failed checksum leaves the earlier copy as it was. The archive is
    deleted once unpacked.
    """
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ConfigError(f"must be 64 hexadecimal digits (a SHA-256), got {sha256!r}", field="sha256")
    sha256 = sha256.lower() if sha256 else None
    target = miniplaces_dir(root)
    if _miniplaces_fetched(target, sha256, force):
        _log(f"MiniPlaces already fetched into {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = _miniplaces_archive(target.parent, url)
    if force:
        archive.unlink(missing_ok=True)
        archive.with_name(archive.name + ".part").unlink(missing_ok=True)
    if not archive.is_file():
        _log(f"downloading {url} into {archive}")
        download(url, archive, timeout=timeout, show=show_progress)
    size, actual = archive.stat().st_size, _archive_sha256(archive, sha256)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-miniplaces-") as staging_name:
        staging = Path(staging_name)
        _log(f"unpacking {archive}")
        safe_extract(archive, staging / "unpacked")
        unpacked = _miniplaces_layout(staging / "unpacked", archive, devkit_url, timeout)
        (unpacked / _FETCHED).write_text(json.dumps({"url": url, "bytes": size, "sha256": actual}) + "\n")
        _replace_dir(unpacked, target, staging / "previous")
    archive.unlink()
    _log(f"MiniPlaces ready in {target}")
    return target


def _miniplaces_fetched(target: Path, sha256: str | None, force: bool) -> bool:
    """Whether ``target`` already holds this fetch (and ``force`` is off): its fetch record names ``sha256`` (any
    archive when ``sha256`` is None). Refuses a non-empty ``target`` that visionlab did not fetch (no record), so
    a folder the user made is never replaced."""
    fetched = target / _FETCHED
    if not force and fetched.is_file() and sha256 in (None, _read_fetched(fetched).get("sha256")):
        return True
    if target.exists() and not fetched.is_file() and any(target.iterdir()):
        raise DatasetError(
            f"{target}: holds files `visionlab data fetch` did not put there; move it or use another root"
        )
    return False


def _archive_sha256(archive: Path, sha256: str | None) -> str:
    """The archive's SHA-256: verified against ``sha256`` when given (a mismatch raises), else computed and logged
    so the next fetch can pin it."""
    if sha256 is not None:
        verify_sha256(archive, sha256)
        return sha256
    actual = sha256_file(archive)
    size = archive.stat().st_size
    _log(f"{archive}: {size} bytes, sha256 {actual} (not verified: no SHA-256 given; give this one next time)")
    return actual


def _miniplaces_archive(root: Path, url: str) -> Path:
    """Where the archive from ``url`` is downloaded: one file per URL, so a partial download is never resumed
    from another address."""
    name = url.rstrip("/").rsplit("/", 1)[-1] or "archive"
    return root / f"miniplaces-{hashlib.sha256(url.encode()).hexdigest()[:8]}-{name}"


def _read_fetched(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _miniplaces_layout(unpacked: Path, archive: Path, devkit_url: str, timeout: float) -> Path:
    """The folder of the unpacked archive that becomes ``ROOT/miniplaces``: the one holding ``images/`` (the top,
    or the one folder an archive wraps everything in), completed with the development kit's list files when the
    archive lacks them, its lists checked against its images."""
    tops = [unpacked, *sorted(p for p in unpacked.iterdir() if p.is_dir())] if unpacked.is_dir() else []
    found = next((d for d in tops if (d / "images").is_dir()), None)
    if found is None:
        raise DatasetError(f"{archive}: no images/ folder at the top of the archive (expected images/train/...)")
    for name in _MINIPLACES_LISTS:
        if not (found / name).is_file():
            try:
                download(devkit_url + name, found / name, timeout=timeout, show=False)
            except DatasetError:
                if name != "categories.txt":  # class names only: without it they come from the train folders
                    raise
                _log(f"no categories.txt at {devkit_url}: class names will come from the train folders")
    try:
        for split in ("train", "val"):
            parse_list_file(found / f"{split}.txt", found / "images", MINIPLACES_CLASSES)
    except DatasetError as exc:  # it names a staging file, deleted on the way out: say which archive it came from
        raise DatasetError(f"{archive}: its lists do not match its images ({exc})") from None
    return found


def _replace_dir(new: Path, target: Path, aside: Path) -> None:
    """Put ``new`` at ``target``; an earlier ``target`` goes to ``aside`` (deleted with the staging directory),
    and comes back if the second rename fails."""
    if target.exists():
        os.replace(target, aside)
    try:
        os.replace(new, target)
    except OSError:
        if aside.exists():
            os.replace(aside, target)
        raise
