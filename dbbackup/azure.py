"""What the storage wrapper does differently for django-storages' ``AzureStorage``.

Downloads: the blob is read as a stream of chunks with ``decompress=False``. The Azure SDK
otherwise un-gzips blobs stored with ``Content-Encoding: gzip``, and ``AzureStorage`` sets that
header on every name ending in ``.gz`` (from :func:`mimetypes.guess_type`): a ``.gz`` backup
would come back decompressed and fail its checks. ``AzureStorage.open()`` would also copy the
whole blob into a temporary file first.

Uploads: staged blocks fed straight from the backup stream, committed at the end, with no
temporary copy (``AzureStorage.save()`` would rewind its content, so a stream would have to be
spooled). Blocks grow as S3 parts do (:func:`dbbackup.s3.part_size`), one held in memory at a
time. The blob exists only once the block list is committed, and only if the name is still
free; a failure before that leaves uncommitted blocks, which are invisible and which Azure
discards after a week. No ``Content-Encoding`` is set.
"""

from __future__ import annotations

import base64
import mimetypes
import sys
from typing import Any, BinaryIO

from dbbackup.exceptions import BackupNotFoundError, StorageError
from dbbackup.s3 import part_size
from dbbackup.streams import IteratorReader

MAX_BLOCKS = 10_000  # about 6 TiB with growing blocks; Azure allows 50,000 of up to 4000 MiB


def _read_block(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes of ``stream``; fewer only at its end."""
    chunks, missing = [], size
    while missing:
        chunk = stream.read(missing)
        if not chunk:
            break
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def upload(storage: Any, name: str, stream: BinaryIO) -> str:
    """Store ``stream`` as blob ``name``; return the stored name."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
    from azure.storage.blob import BlobBlock, ContentSettings
    from storages.utils import clean_name

    cleaned = clean_name(name)
    blob = storage.client.get_blob_client(storage._get_valid_path(name))
    settings = {key: value for key, value in storage.get_object_parameters(cleaned).items() if value}
    settings.pop("content_encoding", None)
    settings.setdefault("content_type", mimetypes.guess_type(cleaned)[0] or "application/octet-stream")
    blocks = []
    while len(blocks) < MAX_BLOCKS:
        size = part_size(len(blocks) + 1)
        data = _read_block(stream, size)
        if data:
            block_id = base64.b64encode(f"dbbackup-{len(blocks):08d}".encode()).decode()
            blob.stage_block(block_id, data, length=len(data), timeout=storage.timeout)
            blocks.append(BlobBlock(block_id=block_id))
        if len(data) < size:
            break
    else:
        if stream.read(1):
            raise StorageError(f"The backup is larger than dbbackup uploads in {MAX_BLOCKS} Azure blocks.")
    try:
        blob.commit_block_list(
            blocks,
            content_settings=ContentSettings(**settings),
            match_condition=MatchConditions.IfMissing,
            timeout=storage.timeout,
        )
    except (ResourceExistsError, ResourceModifiedError) as exc:
        raise StorageError(
            f"{cleaned!r} already exists in the Azure container; it was not overwritten."
        ) from exc
    return cleaned


def is_azure(storage: Any) -> bool:
    """Whether ``storage`` is django-storages' AzureStorage (its module imported already)."""
    module = sys.modules.get("storages.backends.azure_storage")
    return module is not None and isinstance(storage, module.AzureStorage)


def open_stream(storage: Any, name: str) -> BinaryIO:
    """The blob's stored bytes, exactly, as a stream (close it when done)."""
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    try:
        download = storage.client.download_blob(
            storage._get_valid_path(name), timeout=storage.timeout, decompress=False
        )
    except ResourceNotFoundError as exc:
        raise BackupNotFoundError(f"There is no file {name!r} in the Azure container.") from exc
    except AzureError as exc:
        raise StorageError(f"Could not read {name!r} from Azure: {exc}") from exc
    return IteratorReader(download.chunks())
