"""A content-addressed store for attachment bytes.

Attachments are named by the SHA-256 of their content, so the same photo sent twice is kept
once and a half-written file can never be mistaken for a good one: bytes are written to a
temporary file in the same directory, flushed, then renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class BlobNotFound(LookupError):
    pass


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "blobs"

    def path_for(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a SHA-256 hex digest: {digest!r}")
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, content: bytes) -> str:
        """Store ``content`` and return its SHA-256 hex digest."""
        digest = hashlib.sha256(content).hexdigest()
        path = self.path_for(digest)
        if path.exists():
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, digest: str) -> bytes:
        try:
            return self.path_for(digest).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is missing from {self.root}") from None

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).exists()
