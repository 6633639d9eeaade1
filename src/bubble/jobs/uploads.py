"""Uploaded samples: stored by id (never by the client's file name) with their sha256.

A file is written to a temporary name and renamed into place only once it is complete,
so an oversized or broken upload leaves nothing behind. Its first bytes say what it is:
an ELF binary, a script (the `#!` line becomes the interpreter hint) or plain data.
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
    """The upload folder plus the `samples` rows describing it."""

    def __init__(self, root: Path, store: Store, max_bytes: int) -> None:
        self.root = root
        self.store = store
        self.max_bytes = max_bytes
        root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path_of(self, upload_id: str) -> Path:
        return self.root / upload_id

    def save(self, stream: IO[bytes], client_name: str) -> dict[str, Any]:
        """Store `stream` under a fresh id; returns the sample row."""
        upload_id = new_id()
        tmp = self.root / f".{upload_id}.part"
        digest = hashlib.sha256()
        size = 0
        head = b""
        try:
            with open(tmp, "xb") as out:
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise UploadTooLarge(
                            f"the upload is larger than {self.max_bytes} bytes",
                            "upload a smaller file or start the server with a larger --max-upload",
                        )
                    if len(head) < 512:
                        head += chunk[: 512 - len(head)]
                    digest.update(chunk)
                    out.write(chunk)
            file_type, interpreter = sniff(head)
            os.chmod(tmp, 0o755 if file_type != "data" else 0o644)
            os.rename(tmp, self.path_of(upload_id))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        name = os.path.basename(client_name.replace("\\", "/"))[:200] or "upload"
        row = {
            "id": upload_id,
            "kind": "upload",
            "name": name,
            "sha256": digest.hexdigest(),
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
        if row is None or row["kind"] != "upload" or not self.path_of(upload_id).is_file():
            return None
        return row

    @staticmethod
    def work_name(row: dict[str, Any]) -> str:
        """The file name a run's working directory gets: ours, keeping only a harmless
        suffix of the client's name (some interpreters care about `.py`)."""
        suffix = Path(row["name"]).suffix
        return "sample" + (suffix if _SAFE_SUFFIX.match(suffix) else "")
