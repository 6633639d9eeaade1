"""Files of a data dir from before scale-out, moved into the store by `bubble db upgrade`.

Until schema 0002, output, dropped files and uploads were files in the data dir
(`runs/<id>/stdout.txt`, `runs/<id>/drops/<artifact id>`, `uploads/<id>`). After the schema
upgrade they are copied into the `output` and `blobs` tables, so old runs read the same as
new ones and nothing is lost; the files themselves are left where they were.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from bubble.jobs import schema
from bubble.jobs.store import Store

CHUNK = 1 << 20


def import_files(store: Store, data_dir: Path) -> int:
    """Copy the old files into the store; returns how many were imported."""
    done = 0
    with store.engine.connect() as conn:
        arts = [dict(r) for r in conn.execute(select(schema.artifacts)).mappings()]
        uploads = [r[0] for r in conn.execute(select(schema.samples.c.id).where(
            schema.samples.c.kind == "upload"))]  # fmt: skip
    for art in arts:
        path = data_dir / art["path"] if art["path"] else None
        if path is None or not path.is_file() or not path.resolve().is_relative_to(data_dir):
            continue
        if art["kind"] in ("stdout", "stderr"):
            if not store.output_after(art["run_id"], art["kind"], 0, 1):
                data = path.read_bytes()
                for offset in range(0, len(data), CHUNK):
                    store.add_output(
                        art["run_id"], art["kind"], offset, data[offset : offset + CHUNK]
                    )
        elif art["kind"] == "dropped" and store.get_blob(art["id"]) is None:
            store.put_blob(art["id"], path.read_bytes())
        done += 1
        with store.engine.begin() as conn:
            conn.execute(
                schema.artifacts.update()
                .where(schema.artifacts.c.id == art["id"])
                .values(path=None)
            )
    for upload_id in uploads:
        path = data_dir / "uploads" / upload_id
        if path.is_file() and store.get_blob(upload_id) is None:
            store.put_blob(upload_id, path.read_bytes())
            done += 1
    return done
