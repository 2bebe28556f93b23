"""MiniPlaces list files: one ``relative/path.jpg LABEL`` per line, each path checked to stay under the image root.

Its own module because both the dataset reader (:mod:`visionlab.data.datasets`) and the fetcher, which checks a
downloaded archive's lists against its images (:mod:`visionlab.data.fetch`), parse them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from visionlab.errors import DatasetError

__all__ = ["LABEL_INTEGER", "MINIPLACES_CLASSES", "ListEntry", "parse_list_file"]

MINIPLACES_CLASSES = 100
# A label as the list files write it: ASCII digits, a minus sign allowed so that -1 is told apart as out of range.
# Not int()'s grammar, which also takes "1_0" (10), "+5", and digits of other scripts ("٣", "５").
LABEL_INTEGER = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class ListEntry:
    """One image of a split: its path, label (-1 when unlabeled) and where it was listed (file, line)."""

    path: Path
    label: int
    source: str


def _safe_join(root: Path, rel: str, source: str) -> Path:
    if rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        raise DatasetError(f"{source}: absolute path {rel!r} not allowed (paths are relative to {root})")
    # Lexical check (abspath collapses "..", follows no links): a symlinked split folder such as
    # images/train -> /bigdisk/train is the user's choice and stays inside the root.
    path = Path(os.path.abspath(root / rel))
    if not path.is_relative_to(os.path.abspath(root)):
        raise DatasetError(f"{source}: path {rel!r} escapes the image root {root}")
    return path


def parse_list_file(
    list_path: str | Path, image_root: str | Path, num_classes: int, *, labeled: bool = True
) -> list[ListEntry]:
    """Parse a MiniPlaces list: one ``relative/path.jpg LABEL`` per line (``relative/path.jpg`` alone when
    ``labeled`` is False), paths resolved under ``image_root``. CRLF and blank lines are tolerated; anything
    else malformed raises :class:`DatasetError` naming ``file:line``."""
    list_path, image_root = Path(list_path), Path(image_root)
    if not list_path.is_file():
        raise DatasetError(f"{list_path}: list file missing")
    try:
        text = list_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{list_path}: unreadable ({exc})") from exc
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        source = f"{list_path}:{number}"
        fields = line.split()
        if labeled:
            if len(fields) != 2:
                raise DatasetError(f"{source}: expected 'relative/path.jpg LABEL', got {line!r}")
            if not LABEL_INTEGER.fullmatch(fields[1]):
                raise DatasetError(f"{source}: label {fields[1]!r} is not an integer")
            label = int(fields[1])
            if not 0 <= label < num_classes:
                raise DatasetError(f"{source}: label {label} outside [0, {num_classes})")
        else:
            if len(fields) not in (1, 2):
                raise DatasetError(f"{source}: expected 'relative/path.jpg', got {line!r}")
            label = -1
        path = _safe_join(image_root, fields[0], source)
        if not path.is_file():
            raise DatasetError(f"{source}: image {path} does not exist")
        entries.append(ListEntry(path, label, source))
    if not entries:
        raise DatasetError(f"{list_path}: the split is empty")
    return entries
