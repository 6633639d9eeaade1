"""Uploaded samples: stored in the database by id (never by the client's file name) with
their sha256, so the worker that runs one fetches it from there.

The upload is read whole (within the cap) before anything is stored, so an oversized or
broken upload leaves nothing behind. Its first bytes say what it is: an ELF binary, a
script (the `#!` line becomes the interpreter hint) or plain data.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import IO, Any

from bubble.errors import BubbleError
from bubble.jobs.store import Store, new_id, now_iso

_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


class UploadTooLarge(BubbleError):
    """The upload is larger than the server accepts."""


def sniff(head: bytes) -> tuple[str, str | None]:
    """(file type, interpreter hint) from a file's first bytes."""
    if head.startswith(b"\x7fELF"):
        return "elf", None
    if head.startswith(b"#!"):
        line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        return "script", line or None
    return "data", None


class Uploads:
    """Upload blobs plus the `samples` rows describing them."""

    def __init__(self, store: Store, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes

    def save(self, stream: IO[bytes], client_name: str) -> dict[str, Any]:
        """Store `stream` under a fresh id; returns the sample row."""
        upload_id = new_id()
        parts: list[bytes] = []
        size = 0
        while chunk := stream.read(1 << 20):
            size += len(chunk)
            if size > self.max_bytes:
                raise UploadTooLarge(
                    f"the upload is larger than {self.max_bytes} bytes",
                    "upload a smaller file or start the server with a larger --max-upload",
                )
            parts.append(chunk)
        data = b"".join(parts)
        file_type, interpreter = sniff(data[:512])
        self.store.put_blob(upload_id, data)
        name = os.path.basename(client_name.replace("\\", "/"))[:200] or "upload"
        row = {
            "id": upload_id,
            "kind": "upload",
            "name": name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": size,
            "file_type": file_type,
            "executable": file_type != "data",
            "interpreter": interpreter,
            "created_at": now_iso(),
        }
        self.store.add_sample(row)
        return row

    def get(self, upload_id: str) -> dict[str, Any] | None:
        """The sample row of one of *our* uploads, or None (anything else, any path)."""
        if not _ID.match(upload_id):
            return None
        row = self.store.get_sample(upload_id)
        if row is None or row["kind"] != "upload":
            return None
        return row

    @staticmethod
    def work_name(row: dict[str, Any]) -> str:
        """The file name a run's working directory gets: ours, keeping only a harmless
        suffix of the client's name (some interpreters care about `.py`)."""
        suffix = Path(row["name"]).suffix
        return "sample" + (suffix if _SAFE_SUFFIX.match(suffix) else "")
