"""Attachment bytes in the database, for daemons that share a database but no disk.

The file store (:class:`warrantyd.storage.blobs.BlobStore`) is the default and the fastest;
with several daemons on several machines, a photo stored by one must be readable by the
others (digest thumbnails, vendor notices, the vendor details page), so
``[storage] blobs = "database"`` keeps the bytes in the ``blob`` table instead.  Both stores
name blobs by their SHA-256 and have the same ``put``/``get``/``exists``.

A blob is written in its own short transaction, before the change that refers to it: if that
change then rolls back, an unreferenced blob is left, which is harmless (content-addressed,
written again by the retry) — while the reverse order could leave a reference to nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from warrantyd.storage.blobs import BlobNotFound, BlobStore
from warrantyd.storage.db import Database, insert_if_absent
from warrantyd.storage.models import Blob

BLOB_STORES = ("files", "database")


class BlobStorage(Protocol):
    def put(self, content: bytes) -> str: ...
    def get(self, digest: str) -> bytes: ...
    def exists(self, digest: str) -> bool: ...


class DatabaseBlobStore:
    """Blobs as rows of the ``blob`` table, keyed by SHA-256 hex digest.

    Given a ``session``, it reads and writes inside that session's transaction (code that
    already holds one must never open a second: on SQLite that would wait on itself);
    given only a ``db``, each call is its own short transaction.
    """

    def __init__(self, db: Database | None = None, *, session: Session | None = None) -> None:
        if db is None and session is None:
            raise ValueError("DatabaseBlobStore needs a Database or a Session")
        self.db = db
        self.session = session

    @contextmanager
    def _session(self) -> Iterator[Session]:
        if self.session is not None:
            yield self.session
            return
        assert self.db is not None
        with self.db.session() as session:
            yield session

    def put(self, content: bytes) -> str:
        """Store ``content`` (a no-op when another process stored it first); return its digest."""
        digest = hashlib.sha256(content).hexdigest()
        values = {"sha256": digest, "content": content, "size": len(content)}
        with self._session() as session:
            if session.get(Blob, digest) is None:
                insert_if_absent(session, Blob, values)
        return digest

    def get(self, digest: str) -> bytes:
        with self._session() as session:
            content = session.scalar(select(Blob.content).where(Blob.sha256 == digest))
        if content is None:
            raise BlobNotFound(f"blob {digest} is missing from the database's blob table")
        return bytes(content)

    def exists(self, digest: str) -> bool:
        with self._session() as session:
            return session.scalar(select(Blob.sha256).where(Blob.sha256 == digest)) is not None


def blob_store_for(kind: str, data_dir: Path, db: Database | None = None, *,
                   session: Session | None = None) -> BlobStorage:
    """The store ``[storage] blobs`` names: ``files`` under ``data_dir`` or ``database``
    (inside ``session``'s transaction when one is given)."""
    if kind == "database":
        return DatabaseBlobStore(db, session=session)
    if kind == "files":
        return BlobStore(data_dir)
    raise ValueError(f"[storage] blobs = {kind!r}: use \"files\" or \"database\"")
