"""Files by path or URI (a folder, `s3://bucket/...`) through pyarrow's filesystems, one client per
bucket and process: building an S3 client costs ~20 ms, which a per-file lookup would pay for
each of hundreds of landing files. Credentials and endpoint come from the AWS variables."""

from __future__ import annotations

import functools

import pyarrow.fs as pafs

_OBJECT_STORES = ("s3", "gs")  # paths in them are `bucket/key`, as pyarrow names them


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of `path` and the path within it (local paths: the path itself)."""
    if "://" not in path:
        return pafs.LocalFileSystem(), path
    scheme, rest = path.split("://", 1)
    if scheme not in _OBJECT_STORES:
        return pafs.FileSystem.from_uri(path)
    return _client(f"{scheme}://{rest.split('/', 1)[0]}"), rest.rstrip("/")


@functools.cache
def _client(root: str) -> pafs.FileSystem:
    return pafs.FileSystem.from_uri(root)[0]
