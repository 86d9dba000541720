"""Storages for tests: real Django storages that fail on purpose."""

from django.core.files.storage import InMemoryStorage


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
