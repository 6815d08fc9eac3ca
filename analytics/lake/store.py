"""Where lake files live: a local folder (default ``<data dir>/lake``) or ``s3://bucket/prefix``.

Writers build each file in a local staging file and hand it to :meth:`LakeStore.commit`, which returns only
once the file is durable under its final name: locally fsync, atomic rename, fsync of the folder; on S3 a
completed upload (aioboto3, honouring ``AUDIT_S3_ENDPOINT_URL`` and the usual AWS variables). A file is
never visible under its final name half-written, and the final name is deterministic, so writing it again
replaces it. Readers open files through a pyarrow filesystem (``pyarrow.fs.S3FileSystem`` on S3, streaming
ranges, the same credentials), which is synchronous and so fits the engine's worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

__all__ = ["LakeStore"]

STAGING_DIR = "_staging"
"""Local stores stage files here (same filesystem as the lake, so the final rename is atomic); Hive readers
skip folders starting with ``_``."""


@dataclass
class LakeStore:
    """Access to the lake's files, addressed by paths relative to its root (``tenant_id=…/date=…/x.parquet``)."""

    url: str
    endpoint_url: str | None = None
    _fs: pafs.FileSystem | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str | None = None) -> LakeStore:
        if url.startswith("s3://"):
            parsed = urlparse(url)
            if not parsed.netloc:
                raise ValueError("AUDIT_LAKE_URL: an s3:// URL needs a bucket (s3://bucket/prefix)")
            return cls(url=url.rstrip("/"), endpoint_url=endpoint_url or None)
        if "://" in url and not url.startswith("file://"):
            raise ValueError("AUDIT_LAKE_URL must be a folder or an s3://bucket/prefix URL")
        path = Path(url.removeprefix("file://")).expanduser().resolve()
        return cls(url=str(path))

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    @property
    def bucket(self) -> str:
        return urlparse(self.url).netloc

    @property
    def prefix(self) -> str:
        """Key prefix inside the bucket ('' or ending with '/')."""
        p = urlparse(self.url).path.strip("/")
        return f"{p}/" if p else ""

    def _key(self, rel: str) -> str:
        return self.prefix + rel

    # --- reading (synchronous, pyarrow) -------------------------------------------------------------

    @property
    def filesystem(self) -> pafs.FileSystem:
        if self._fs is None:
            if self.is_s3:
                options: dict[str, Any] = {
                    "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
                }
                if self.endpoint_url:
                    ep = urlparse(self.endpoint_url)
                    options["endpoint_override"] = ep.netloc or ep.path
                    options["scheme"] = ep.scheme or "https"
                self._fs = pafs.S3FileSystem(**options)
            else:
                self._fs = pafs.LocalFileSystem()
        return self._fs

    def full_path(self, rel: str) -> str:
        """The path of ``rel`` for :attr:`filesystem`."""
        if self.is_s3:
            return f"{self.bucket}/{self._key(rel)}"
        return str(Path(self.url) / rel)

    def open_input(self, rel: str) -> Any:
        """A seekable pyarrow file of ``rel`` (ranges are fetched on demand on S3)."""
        return self.filesystem.open_input_file(self.full_path(rel))

    # --- writing -------------------------------------------------------------------------------------

    def staging_path(self) -> Path:
        """A fresh local path to build one file in, on the lake's filesystem when the lake is local."""
        local = Path(self.url) / STAGING_DIR if not self.is_s3 else None
        folder = local or Path(tempfile.gettempdir()) / "auditlog-lake-staging"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{uuid.uuid4().hex}.parquet.tmp"

    async def commit(self, staged: Path, rel: str) -> int:
        """Make ``staged`` durable as ``rel`` (replacing a previous file of that name); returns its size."""
        return (await self.commit_many([(staged, rel)]))[0]

    async def commit_many(self, files: Sequence[tuple[Path, str]]) -> list[int]:
        """:meth:`commit` for several files: one S3 client, or one thread hop and one fsync per folder."""
        if not files:
            return []
        if not self.is_s3:
            return await asyncio.to_thread(_durable_renames, [(staged, Path(self.url) / rel) for staged, rel in files])
        sizes = []
        try:
            async with self._s3() as s3:
                for staged, rel in files:
                    sizes.append((await asyncio.to_thread(staged.stat)).st_size)
                    await s3.upload_file(str(staged), self.bucket, self._key(rel))
        finally:
            for staged, _ in files:
                await asyncio.to_thread(staged.unlink, missing_ok=True)
        return sizes

    async def put(self, rel: str, data: bytes) -> None:
        """Write a small file durably under ``rel`` (replacing it), staged like every other file."""
        staged = self.staging_path()
        await asyncio.to_thread(staged.write_bytes, data)
        await self.commit(staged, rel)

    async def delete(self, rels: Iterable[str]) -> None:
        """Delete files (missing ones are fine)."""
        rels = list(rels)
        if not rels:
            return
        if self.is_s3:
            async with self._s3() as s3:
                for i in range(0, len(rels), 1000):
                    chunk = [{"Key": self._key(r)} for r in rels[i : i + 1000]]
                    await s3.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})
        else:
            for rel in rels:
                with contextlib.suppress(FileNotFoundError):
                    (Path(self.url) / rel).unlink()

    async def list(self, prefix: str) -> list[str]:
        """Relative paths of every file under ``prefix`` (a folder path such as ``tenant_id=…/``)."""
        if self.is_s3:
            found: list[str] = []
            async with self._s3() as s3:
                paginator = s3.get_paginator("list_objects_v2")
                async for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                    found.extend(obj["Key"][len(self.prefix) :] for obj in page.get("Contents", []))
            return found
        root = Path(self.url)
        base = root / prefix
        if not base.exists():
            return []
        return [str(p.relative_to(root)) for p in base.rglob("*") if p.is_file()]

    async def clear_staging(self, older_than_seconds: float) -> None:
        """Remove staging leftovers of crashed writers (local stores only)."""
        if self.is_s3:
            return
        folder = Path(self.url) / STAGING_DIR
        if not folder.exists():
            return
        import time

        cutoff = time.time() - older_than_seconds
        for p in folder.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if p.stat().st_mtime <= cutoff:
                    p.unlink()

    def _s3(self) -> Any:
        import aioboto3

        return aioboto3.Session().client("s3", endpoint_url=self.endpoint_url)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _durable_renames(files: list[tuple[Path, Path]]) -> list[int]:
    """fsync each staged file, rename it into place, then fsync every folder that gained an entry."""
    sizes = []
    folders: dict[Path, None] = {}
    for staged, final in files:
        final.parent.mkdir(parents=True, exist_ok=True)
        _fsync(staged)
        sizes.append(staged.stat().st_size)
        os.replace(staged, final)
        folders[final.parent] = None
        folders[final.parent.parent] = None
    for folder in folders:
        _fsync(folder)
    return sizes
