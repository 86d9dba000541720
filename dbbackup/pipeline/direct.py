"""Backups that a connector writes straight into their file: the data is written once, not twice.

SQLite's backup API can only write to a database file. Streamed, its copy is written twice: into
a scratch file in ``DBBACKUP_TMP_DIR``, then from there into the storage. When the backup is
stored as it is (nothing compressed, nothing encrypted) in a local file (a ``FileSystemStorage``,
or ``-O`` with a path), the connector writes it into the very hidden partial file that the
stream would have filled (:meth:`dbbackup.db.base.BaseDBConnector.dump_into`). That file is then
read once for its size and SHA-256 while it is synced (:func:`dbbackup.local_write.seal`), and
published as a streamed backup is: hard-linked into the storage under a free name
(:class:`dbbackup.local_write.LocalPartial`), or staged beside the ``-O`` path for
:func:`~dbbackup.pipeline._common.write_metadata` to put in place with its sidecar.

Names, modes, leftovers, conflicts, sidecars, signals and retention are those of the streamed
path; every other combination (remote storages, compression, encryption, connectors that only
stream) streams.
"""

from __future__ import annotations

from collections.abc import Callable

from dbbackup import codecs, leftovers
from dbbackup.db.base import BaseDBConnector
from dbbackup.local_write import FileDigest
from dbbackup.pipeline._common import StagedPath, conflict_renamer, stage_local_file
from dbbackup.storage import Storage


def file_writer(
    connector: BaseDBConnector,
    codec: codecs.Codec | None,
    encrypt: bool,
    storage: Storage,
    output_path: str | None,
) -> Callable[[str], None] | None:
    """The connector's ``dump_into`` when it may write this backup's file itself, else ``None``."""
    if codec is not None or encrypt or not connector.can_dump_into():
        return None
    if not output_path and not storage.is_local():
        return None
    return connector.dump_into


def store_file(
    writer: Callable[[str], None],
    *,
    storage: Storage,
    filename: str,
    output_path: str | None,
    rename: Callable[[int], str] | None,
    progress: Callable[[int], object] | None,
) -> tuple[str, StagedPath | None, FileDigest]:
    """:func:`~dbbackup.pipeline._common.store` for a backup ``writer(path)`` writes itself.

    Returns what ``store`` returns: the stored name, the staged ``-O`` path if any, and the
    size and SHA-256 of the stored bytes. ``progress(n)`` is called as they are hashed. Stale
    partial files of killed runs are removed first; whatever fails, nothing is left.
    """
    if output_path:
        staged, digest = stage_local_file(writer, output_path, progress)
        return filename, staged, digest
    leftovers.sweep_storage(storage)
    with storage.local_partial(filename, on_conflict=conflict_renamer(rename)) as partial:
        digest = partial.fill(writer, progress)
        filename = partial.publish()
    return filename, None, digest
