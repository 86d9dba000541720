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
