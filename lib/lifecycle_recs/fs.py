"""Paths and files: local paths or URIs (``s3://``, ``abfss://``, ``dbfs:``), through
pyarrow's filesystems, so the same code runs on a laptop and on a cluster's storage."""

from __future__ import annotations

from typing import Optional, Tuple

from pyarrow import fs as pafs


def is_remote_path(p: Optional[str]) -> bool:
    """A URI (``s3://``, ``abfss://``, ``file://`` ...) or a ``dbfs:`` path: never
    resolved against the project root and never checked with ``os.path``."""
    return p is not None and ("://" in p or p.startswith("dbfs:"))


def filesystem(path: str) -> Tuple[pafs.FileSystem, str]:
    """The filesystem of ``path`` and the path within it."""
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def remove_dir(path: str) -> None:
    """Remove the directory ``path`` and what it holds (nothing when it is absent)."""
    fs, root = filesystem(path)
    if fs.get_file_info(root).type != pafs.FileType.NotFound:
        fs.delete_dir(root)
