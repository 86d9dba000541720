"""Storages for tests: real Django storages that fail on purpose."""

from django.core.files.base import ContentFile
from django.core.files.storage import InMemoryStorage, Storage


class FailingStorage(InMemoryStorage):
    """An in-memory storage whose uploads fail after ``fail_after`` bytes (like a dropped link)."""

    fail_after = 4096

    def _save(self, name, content):
        received = 0
        for chunk in content.chunks():
            received += len(chunk)
            if received > self.fail_after:
                raise OSError(f"connection reset after {received} bytes")
        raise AssertionError("the test stream was shorter than fail_after")


class KeyListingStorage(Storage):
    """A minimal object-store-like backend: flat keys under ``location``, and (like some real
    backends) a ``listdir`` that returns full keys, prefix included."""

    location = "backups"

    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def _key(self, name):
        return f"{self.location}/{name}"

    def _save(self, name, content):
        self.objects[self._key(name)] = b"".join(content.chunks())
        return name

    def _open(self, name, mode="rb"):
        return ContentFile(self.objects[self._key(name)], name=name)

    def exists(self, name):
        return self._key(name) in self.objects

    def delete(self, name):
        self.objects.pop(self._key(name), None)

    def size(self, name):
        return len(self.objects[self._key(name)])

    def listdir(self, path):
        return [], sorted(self.objects)


class _ObjectStore(Storage):
    """A flat in-memory object store; subclasses define ``_save`` like a real backend's."""

    #: name -> (mode, link count) of the content file each ``_save`` was given
    seen: list

    def __init__(self, **options):
        self.objects: dict[str, bytes] = {}
        self.seen = []

    def _note(self, content):
        import os

        try:
            status = os.fstat(content.file.fileno())
        except (AttributeError, OSError):
            self.seen.append((None, None))  # not a real file (e.g. a ContentFile)
        else:
            self.seen.append((status.st_mode & 0o777, status.st_nlink))

    def _open(self, name, mode="rb"):
        return ContentFile(self.objects[name], name=name)

    def exists(self, name):
        return name in self.objects

    def delete(self, name):
        self.objects.pop(name, None)

    def size(self, name):
        return len(self.objects[name])

    def listdir(self, path):
        return [], sorted(self.objects)


class AzureLikeStorage(_ObjectStore):
    """``_save`` as django-storages' AzureStorage starts: ``content.seek(0)``, then upload."""

    def _save(self, name, content):
        self._note(content)
        content.seek(0)
        self.objects[name] = content.read()
        return name


class DropboxLikeStorage(_ObjectStore):
    """``_save`` as DropboxStorage: ``content.open()``, ``content.size``, chunked upload."""

    def _save(self, name, content):
        self._note(content)
        content.open()
        size, data = content.size, b""
        while len(data) < size:
            data += content.read(4096)
        self.objects[name] = data
        return name


class GoogleCloudLikeStorage(_ObjectStore):
    """``_save`` as GoogleCloudStorage: ``upload_from_file(content, rewind=True, size=content.size)``."""

    def _save(self, name, content):
        self._note(content)
        size = content.size
        content.seek(0)  # rewind=True
        data = content.read(size)
        assert len(data) == size
        self.objects[name] = data
        return name
