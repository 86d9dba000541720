"""Readable byte streams that the pipeline stages are made of.

Each stage is a read-only, non-seekable binary stream wrapping the one before it. A stage that
finds a problem raises from ``read()``, at the latest when the end of its input is reached, so
the consumer (a storage write or a connector restore) never sees a clean end of stream for bad
data. Consumers therefore commit only after ``read()`` has returned ``b""``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from dbbackup.exceptions import CorruptBackupError

#: How much a stage asks of the one before it at a time.
CHUNK_SIZE = 1024 * 1024

#: The most one ``write()`` to a local file hands the kernel: 1 GB took 0.7-1.4 s of kernel time
#: in 1 MiB writes and 0.23-0.26 s in 256 KiB ones on a Linux 6.x virtual machine (ext4).
WRITE_SIZE = 256 * 1024


class _ReaderBase(io.RawIOBase):
    """A read-only raw stream whose subclasses implement ``_read(size)``."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._read(len(buffer))
        size = len(data)
        buffer[:size] = data
        return size

    def _read(self, size: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        return self._read(size)

    def readall(self) -> bytes:
        parts = []
        while chunk := self._read(CHUNK_SIZE):
            parts.append(chunk)
        return b"".join(parts)


class IteratorReader(_ReaderBase):
    """A stream over an iterable of byte chunks (a generator, say).

    Closing the stream closes the generator, so its ``finally`` blocks run.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = b""

    def _read(self, size: int) -> bytes:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return b""
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


class WrappedReader(_ReaderBase):
    """A stage over another binary stream; closing it closes the inner stream."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner

    def _read(self, size: int) -> bytes:
        return self.inner.read(size)

    def close(self) -> None:
        if not self.closed:
            try:
                self.inner.close()
            finally:
                super().close()


class CountingReader(WrappedReader):
    """Passes bytes through and counts them (:attr:`size`)."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__(inner)
        self.size = 0

    def _read(self, size: int) -> bytes:
        data = self.inner.read(size)
        self.size += len(data)
        return data


class BackgroundHash:
    """A SHA-256 computed on a worker thread, so that hashing overlaps the caller's I/O.

    ``hashlib`` releases the GIL while it hashes a large buffer, so on two cores the digest
    costs (almost) no wall-clock time. Chunks are hashed in order; pieces under :attr:`BATCH` are
    gathered first (``gzip`` reads 8 KiB at a time; a hand-off each cost more than the hashing);
    at most ``queue_chunks`` batches wait, so memory stays flat. :meth:`hexdigest` waits for them;
    :meth:`close` stops the thread without a result (the next update starts it again).
    """

    BATCH = CHUNK_SIZE

    def __init__(self, queue_chunks: int = 4) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue = queue.Queue(maxsize=queue_chunks)
        self._thread: threading.Thread | None = None
        self._pending = bytearray()

    def update(self, data: bytes) -> None:
        if self._pending or len(data) < self.BATCH:
            self._pending += data
            if len(self._pending) >= self.BATCH:
                self._flush()
        else:
            self._put(data if isinstance(data, bytes) else bytes(data))

    def _flush(self) -> None:
        if self._pending:
            batch, self._pending = bytes(self._pending), bytearray()
            self._put(batch)

    def _put(self, data: bytes) -> None:
        if self._thread is None:
            thread = threading.Thread(target=self._work, name="dbbackup-sha256", daemon=True)
            thread.start()
            # Only a started thread is remembered: a Ctrl-C between creating and starting it
            # must not turn into "cannot join thread before it is started" in close().
            self._thread = thread
        self._queue.put(data)

    def _work(self) -> None:
        while (data := self._queue.get()) is not None:
            self._hash.update(data)

    def close(self) -> None:
        if self._thread is None:
            return
        thread, self._thread = self._thread, None
        # a Ctrl-C inside put() may leave the queue's lock held: leave the daemon, don't deadlock
        if self._queue.mutex.acquire(timeout=1.0):
            self._queue.mutex.release()
            self._queue.put(None)
            thread.join()

    def hexdigest(self) -> str:
        self._flush()
        self.close()
        return self._hash.hexdigest()


class DigestReader(WrappedReader):
    """Passes bytes through, counting them and computing their SHA-256.

    ``on_bytes(n)`` is called as bytes pass (a progress bar, say).

    With ``expected_sha256`` and/or ``expected_size``, the end of the stream raises
    :class:`CorruptBackupError` instead of returning ``b""`` when they disagree. :attr:`checked`
    turns true only once the end was reached and agreed: a consumer that stopped reading early
    has verified nothing.
    """

    def __init__(
        self,
        inner: BinaryIO,
        *,
        expected_sha256: str | None = None,
        expected_size: int | None = None,
        label: str = "the backup",
        on_bytes: Callable[[int], object] | None = None,
    ) -> None:
        super().__init__(inner)
        self._on_bytes = on_bytes
        self._hash = BackgroundHash()
        self.size = 0
        self.expected_sha256 = expected_sha256
        self.expected_size = expected_size
        self.label = label
        self.checked = False

    def _read(self, size: int) -> bytes:
        data = self.inner.read(size)
        if data:
            self._hash.update(data)
            self.size += len(data)
            if self._on_bytes is not None:
                self._on_bytes(len(data))
        else:
            self._verify()
        return data

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._hash.close()

    def _verify(self) -> None:
        if self.expected_size is not None and self.size != self.expected_size:
            raise CorruptBackupError(
                f"{self.label} is {self.size} bytes long but its metadata says "
                f"{self.expected_size}: it is truncated or was changed."
            )
        if self.expected_sha256 is not None and self.sha256 != self.expected_sha256:
            raise CorruptBackupError(
                f"{self.label} does not match the SHA-256 in its metadata: it was damaged or "
                "changed after it was written."
            )
        self.checked = True


class PeekableReader(WrappedReader):
    """Lets a stage look at the first bytes of a stream without consuming them."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__(inner)
        self._head = b""

    def peek(self, size: int) -> bytes:
        while len(self._head) < size:
            data = self.inner.read(size - len(self._head))
            if not data:
                break
            self._head += data
        return self._head[:size]

    def _read(self, size: int) -> bytes:
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self.inner.read(size)


class CallbackOnEndReader(WrappedReader):
    """Calls ``on_end()`` once, when the inner stream ends; what it raises propagates."""

    def __init__(self, inner: BinaryIO, on_end: Callable[[], None]) -> None:
        super().__init__(inner)
        self._on_end: Callable[[], None] | None = on_end

    def _read(self, size: int) -> bytes:
        data = self.inner.read(size)
        if not data and self._on_end is not None:
            on_end, self._on_end = self._on_end, None
            on_end()
        return data


def copy_stream(source: BinaryIO, write: Callable[[bytes], object], chunk_size: int = CHUNK_SIZE) -> int:
    """Copy ``source`` to ``write`` in chunks until its end; return the number of bytes."""
    total = 0
    while chunk := source.read(chunk_size):
        write(chunk)
        total += len(chunk)
    return total


def copy_to_file(source: BinaryIO, handle: BinaryIO) -> int:
    """Copy ``source`` to its end into the local file ``handle``, in writes of at most
    :data:`WRITE_SIZE` bytes; return the number of bytes."""
    total = 0
    while chunk := source.read(CHUNK_SIZE):
        view = memoryview(chunk)
        for start in range(0, len(view), WRITE_SIZE):
            handle.write(view[start : start + WRITE_SIZE])
        total += len(chunk)
    return total


class Cancelled(Exception):
    """Raised inside a producer's ``write`` once its reader was closed early."""


class ProducerReader(_ReaderBase):
    """A stream of what ``produce(write)`` writes, run on a worker thread.

    ``write`` blocks while a small queue is full, so the producer runs only as fast as the
    stream is read and memory stays flat. The end of the stream is reported once ``produce``
    returned; if it raised, ``read()`` raises that instead. Closing the stream early makes the
    producer's next ``write`` raise :class:`Cancelled`, and waits for it to stop; ``on_cancel``
    (if given) is called first to interrupt a producer blocked elsewhere (a process, say).
    """

    _END = object()

    def __init__(
        self,
        produce: Callable[[Callable[[bytes], None]], None],
        *,
        name: str = "dbbackup-producer",
        on_cancel: Callable[[], None] | None = None,
        queue_chunks: int = 8,
    ) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=queue_chunks)
        self._pending = b""
        self._finished = False
        self._cancelled = threading.Event()
        self._on_cancel = on_cancel
        self._thread = threading.Thread(target=self._work, args=(produce,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: object) -> None:
        while True:
            if self._cancelled.is_set():
                raise Cancelled
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _write(self, data: bytes) -> None:
        if data:
            self._put(bytes(data))

    def _work(self, produce: Callable[[Callable[[bytes], None]], None]) -> None:
        error: BaseException | None = None
        try:
            produce(self._write)
        except Cancelled:
            return
        except BaseException as exc:
            error = exc
        with contextlib.suppress(Cancelled):
            self._put((self._END, error))

    def _read(self, size: int) -> bytes:
        while not self._pending:
            if self._finished:
                return b""
            item = self._queue.get()
            if isinstance(item, tuple) and item and item[0] is self._END:
                self._finished = True
                if item[1] is not None:
                    raise item[1]
                return b""
            self._pending = item
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def close(self) -> None:
        if not self.closed and not self._finished:
            self._cancelled.set()
            if self._on_cancel is not None:
                self._on_cancel()
            while self._thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    self._queue.get(timeout=0.1)
            self._thread.join()
        super().close()


def read_ahead(stream: BinaryIO, *, name: str, queue_chunks: int = 2) -> ProducerReader:
    """``stream``, read on a worker thread up to ``queue_chunks`` chunks ahead of its reader.

    For a stage that works while its caller does something else: a compressor compresses on
    while the chunk before is digested and written. ``read()`` raises the errors of ``stream``;
    closing the result early stops the thread and closes ``stream``.
    """

    def produce(write: Callable[[bytes], None]) -> None:
        try:
            while chunk := stream.read(CHUNK_SIZE):
                write(chunk)
        finally:
            stream.close()

    return ProducerReader(produce, name=name, queue_chunks=queue_chunks)


def drain(source: BinaryIO, chunk_size: int = CHUNK_SIZE) -> int:
    """Read ``source`` to its end (so its end-of-stream checks run); return the bytes read."""
    total = 0
    while chunk := source.read(chunk_size):
        total += len(chunk)
    return total
