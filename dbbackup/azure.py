"""What the storage wrapper does differently for django-storages' ``AzureStorage``.

Downloads: the blob is read as a stream of chunks with ``decompress=False``. The Azure SDK
otherwise un-gzips blobs stored with ``Content-Encoding: gzip``, and ``AzureStorage`` sets that
header on every name ending in ``.gz`` (from :func:`mimetypes.guess_type`): a ``.gz`` backup
would come back decompressed and fail its checks. ``AzureStorage.open()`` would also copy the
whole blob into a temporary file first.

Uploads go through the spool of :mod:`dbbackup.upload`: ``AzureStorage`` rewinds its content,
and the SDK commits a large blob's blocks only at the end, so a blob appears complete or not at
all.
"""

from __future__ import annotations

import sys
from typing import Any, BinaryIO

from dbbackup.exceptions import BackupNotFoundError, StorageError
from dbbackup.streams import IteratorReader


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
