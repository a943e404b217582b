"""Content-addressed artefact directory: a file's name is its SHA-256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from tunewatch._errors import NotFoundError, StoreError


class ArtefactStore:
    """Stores immutable blobs (ONNX files, reports) under ``root/<aa>/<sha256><suffix>``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str, suffix: str = ".onnx") -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"`sha256` must be 64 lowercase hex digits, got {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def put(self, data: bytes, suffix: str = ".onnx") -> str:
        """Write ``data`` durably (temp file, fsync, rename) and return its SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest, suffix)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            raise StoreError(f"cannot write artefact {digest} under {self.root}: {exc}") from exc
        return digest

    def get(self, sha256: str, suffix: str = ".onnx") -> bytes:
        """Read an artefact back, verifying its content still matches its name."""
        target = self.path(sha256, suffix)
        try:
            data = target.read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"artefact {sha256} is missing from {self.root}") from exc
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"artefact {sha256} is corrupt: its content hash differs")
        return data
