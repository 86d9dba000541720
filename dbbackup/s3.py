"""What the storage wrapper does differently for django-storages' ``S3Storage``.

Uploads: a multipart upload fed straight from the backup stream. Parts grow as the backup
does: the first is 8 MiB and each next one 128 KiB larger, so one part (the only thing held in
memory) stays small for ordinary backups, while S3's limit of 10,000 parts still allows about
6 TiB (the 10,000th part is about 1.2 GiB; S3 accepts up to 5 GiB). The object appears only
when the upload completes; any failure aborts it, so no partial object is ever left.

Downloads: the object's body is read as a stream, instead of being copied into a temporary
file first as ``S3Storage.open()`` does.

``-O s3://bucket/key``: which name in the S3 backup storage such a URI designates, if any.
"""

from __future__ import annotations

import sys
from typing import Any, BinaryIO

from dbbackup.exceptions import BackupNotFoundError, StorageError

FIRST_PART_SIZE = 8 * 1024 * 1024
PART_GROWTH = 128 * 1024
MAX_PARTS = 10_000


def part_size(number: int) -> int:
    """The size of part ``number`` (1-based) of an upload."""
    return FIRST_PART_SIZE + (number - 1) * PART_GROWTH


def largest_backup() -> int:
    """The most an upload can carry within S3's part limit."""
    return sum(part_size(number) for number in range(1, MAX_PARTS + 1))


def is_s3(storage: Any) -> bool:
    """Whether ``storage`` is django-storages' S3Storage, without importing boto3 needlessly:
    an S3Storage instance exists only if its module was imported already."""
    module = sys.modules.get("storages.backends.s3")
    return module is not None and isinstance(storage, module.S3Storage)


URI_PREFIX = "s3://"


def is_uri(output_path: str | None) -> bool:
    """Whether a ``-O/--output-path`` value is an ``s3://bucket/key`` URI."""
    return bool(output_path) and output_path.startswith(URI_PREFIX)


def output_name(storage: Any, uri: str) -> str:
    """The name in the backup storage that ``-O s3://bucket/key`` designates.

    The URI is honoured only when it points into the configured backup storage: that storage
    must be django-storages' ``S3Storage``, ``bucket`` must be its bucket, and ``key`` must lie
    under its ``location`` (which is then removed: the rest is the storage name, e.g. for
    ``dbrestore -i``). Anything else is refused with a one-line :class:`StorageError`; the
    backup is never written to a bucket or place other than the one configured.
    """
    bucket, _, key = uri[len(URI_PREFIX) :].partition("/")
    backend = storage.storage
    if not is_s3(backend):
        raise StorageError(
            f"-O/--output-path {uri!r}: s3:// paths are written through the backup storage, "
            f"which must then be S3Storage; {storage} is {type(backend).__name__}."
        )
    if not bucket or bucket != backend.bucket_name:
        raise StorageError(
            f"-O/--output-path {uri!r}: the bucket {bucket!r} is not the backup storage's bucket "
            f"{backend.bucket_name!r}; nothing was written."
        )
    location = (backend.location or "").strip("/")
    if location:
        if not key.startswith(location + "/"):
            raise StorageError(
                f"-O/--output-path {uri!r}: the key must lie under the backup storage's location "
                f"{location + '/'!r}."
            )
        key = key[len(location) + 1 :]
    if not key or key.endswith("/") or ".partial-" in key.rsplit("/", 1)[-1]:
        raise StorageError(f"-O/--output-path {uri!r} names no object; give s3://bucket/path/name.")
    if key.endswith(".metadata"):
        raise StorageError(f"-O/--output-path {uri!r}: .metadata names are kept for sidecars.")
    return key


def _key(storage: Any, name: str) -> tuple[str, str]:
    from storages.utils import clean_name

    cleaned = clean_name(name)
    return cleaned, storage._normalize_name(cleaned)


class _PartBuffer:
    """One reusable buffer for the parts of an upload, read as a seekable file by botocore.

    Reusing it (it only grows, by 128 KiB a part) keeps the allocator from fragmenting memory
    with a new multi-megabyte buffer for every part.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._length = 0
        self._position = 0

    def fill(self, stream: BinaryIO, size: int) -> int:
        """Read up to ``size`` bytes of ``stream`` into the buffer; fewer only at its end."""
        if len(self._buffer) < size:
            self._buffer.extend(bytes(size - len(self._buffer)))
        view, filled = memoryview(self._buffer), 0
        try:
            while filled < size:
                chunk = stream.read(size - filled)
                if not chunk:
                    break
                view[filled : filled + len(chunk)] = chunk
                filled += len(chunk)
        finally:
            view.release()
        self._length, self._position = filled, 0
        return filled

    # The file interface botocore uses to send, checksum and (on retry) re-send a part.
    def read(self, size: int = -1) -> bytes:
        end = self._length if size is None or size < 0 else min(self._length, self._position + size)
        with memoryview(self._buffer) as view:  # one copy, not a slice and then a copy
            data = bytes(view[self._position : end])
        self._position = end
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: self._length}[whence]
        self._position = max(0, min(self._length, base + offset))
        return self._position

    def tell(self) -> int:
        return self._position

    def __len__(self) -> int:
        return self._length


def upload(storage: Any, name: str, stream: BinaryIO) -> str:
    """Store ``stream`` as object ``name``; return the stored name."""
    cleaned, key = _key(storage, name)
    params = storage._get_write_parameters(key)
    obj = storage.bucket.Object(key)
    body = _PartBuffer()
    number = 1
    if body.fill(stream, part_size(number)) < part_size(number):  # small enough for one request
        obj.put(Body=body, **params)
        return cleaned
    multipart = obj.initiate_multipart_upload(**params)
    parts = []
    try:
        while True:
            result = multipart.Part(number).upload(Body=body)
            parts.append({"ETag": result["ETag"], "PartNumber": number})
            if len(body) < part_size(number):
                break
            if number == MAX_PARTS:
                raise StorageError(f"The backup is larger than S3 accepts in {MAX_PARTS} parts.")
            number += 1
            if not body.fill(stream, part_size(number)):
                break
        multipart.complete(MultipartUpload={"Parts": parts})
    except BaseException:
        multipart.abort()
        raise
    return cleaned


def open_stream(storage: Any, name: str) -> BinaryIO:
    """The object's content as a stream (close it when done)."""
    from botocore.exceptions import ClientError

    _, key = _key(storage, name)
    try:
        return storage.bucket.Object(key).get()["Body"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise BackupNotFoundError(f"There is no file {name!r} in the S3 bucket.") from exc
        raise StorageError(f"Could not read {name!r} from S3: {exc}") from exc
