"""What the storage wrapper does differently for django-storages' ``GoogleCloudStorage``.

Uploads: a resumable upload fed straight from the backup stream (``blob.open("wb")``), 8 MiB
at a time, with no temporary copy. The object appears only when the upload is finalised; any
failure cancels the upload, so no partial object is ever left. The upload is conditional on
the name being free (``if_generation_match=0``): an existing backup is never overwritten.

Downloads: the object's bytes exactly as stored (``raw_download``), read as a stream.
``GoogleCloudStorage`` gives ``Content-Encoding: gzip`` to names ending in ``.gz``, and Google
Cloud then serves such objects un-gzipped to ordinary reads: a ``.gz`` backup would come back
decompressed. dbbackup's uploads set no content encoding at all.
"""

from __future__ import annotations

import logging
import mimetypes
import sys
from typing import Any, BinaryIO

from dbbackup.exceptions import BackupNotFoundError, StorageError
from dbbackup.streams import copy_stream

logger = logging.getLogger("dbbackup.storage")

CHUNK_SIZE = 8 * 1024 * 1024  # a multiple of 256 KiB, as resumable uploads require


def is_gcs(storage: Any) -> bool:
    """Whether ``storage`` is django-storages' GoogleCloudStorage (its module imported already)."""
    module = sys.modules.get("storages.backends.gcloud")
    return module is not None and isinstance(storage, module.GoogleCloudStorage)


def _blob(storage: Any, name: str) -> tuple[str, Any]:
    from storages.utils import clean_name

    cleaned = clean_name(name)
    return cleaned, storage.bucket.blob(storage._normalize_name(cleaned))


def upload(storage: Any, name: str, stream: BinaryIO) -> str:
    """Store ``stream`` as object ``name``; return the stored name."""
    from google.api_core.exceptions import PreconditionFailed

    cleaned, blob = _blob(storage, name)
    parameters = storage.get_object_parameters(blob.name)
    acl = parameters.pop("acl", storage.default_acl)
    content_type = parameters.pop("content_type", None) or (
        mimetypes.guess_type(cleaned)[0] or "application/octet-stream"
    )
    parameters.pop("content_encoding", None)
    for prop, value in parameters.items():
        setattr(blob, prop, value)
    writer = blob.open(
        "wb",
        chunk_size=CHUNK_SIZE,
        ignore_flush=True,
        content_type=content_type,
        predefined_acl=acl,
        if_generation_match=0,
    )
    try:
        copy_stream(stream, writer.write)
        writer.close()  # finalises the upload: the object appears now
    except PreconditionFailed as exc:
        raise StorageError(f"{cleaned!r} already exists in the bucket; it was not overwritten.") from exc
    except BaseException:
        try:
            writer.terminate()  # cancels the resumable upload: no object
        except Exception:  # the original error matters more
            logger.warning("Could not cancel the unfinished upload of %s to Google Cloud", cleaned)
        raise
    return cleaned


def open_stream(storage: Any, name: str) -> BinaryIO:
    """The object's stored bytes, exactly, as a stream (close it when done)."""
    from google.api_core.exceptions import GoogleAPIError, NotFound

    _, blob = _blob(storage, name)
    try:
        blob.reload()
    except NotFound as exc:
        raise BackupNotFoundError(f"There is no file {name!r} in the Google Cloud bucket.") from exc
    except GoogleAPIError as exc:
        raise StorageError(f"Could not read {name!r} from Google Cloud: {exc}") from exc
    return blob.open("rb", chunk_size=CHUNK_SIZE, raw_download=True)
