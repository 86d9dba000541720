import gzip
import hashlib
import io
import os

import pytest
from django.test import override_settings

from dbbackup import codecs
from dbbackup.exceptions import CorruptBackupError
from dbbackup.streams import (
    CHUNK_SIZE,
    WRITE_SIZE,
    BackgroundHash,
    DigestReader,
    IteratorReader,
    PeekableReader,
    copy_to_file,
    read_ahead,
)

DATA = os.urandom(200_000) + "ünïcode".encode() * 10_000


def test_iterator_reader_serves_any_read_size_and_closes_the_generator():
    closed = []

    def chunks():
        try:
            yield b"abc"
            yield b""
            yield b"defgh"
        finally:
            closed.append(True)

    reader = IteratorReader(chunks())
    assert reader.read(2) == b"ab"
    assert reader.read(10) == b"c"
    assert reader.read() == b"defgh"
    assert reader.read(1) == b""
    reader.close()
    assert closed == [True]


def test_digest_reader_counts_and_hashes():
    reader = DigestReader(io.BytesIO(DATA))
    assert reader.read() == DATA
    assert reader.size == len(DATA)
    assert reader.sha256 == hashlib.sha256(DATA).hexdigest()


def test_digest_reader_raises_at_the_end_when_the_checksum_differs():
    tampered = bytearray(DATA)
    tampered[len(DATA) // 2] ^= 0xFF
    reader = DigestReader(
        io.BytesIO(bytes(tampered)), expected_sha256=hashlib.sha256(DATA).hexdigest(), label="x.dump"
    )
    with pytest.raises(CorruptBackupError, match="x.dump does not match the SHA-256"):
        reader.readall()


def test_digest_reader_raises_at_the_end_when_the_size_differs():
    reader = DigestReader(io.BytesIO(DATA[:-10]), expected_size=len(DATA), label="x.dump")
    with pytest.raises(CorruptBackupError, match="truncated"):
        reader.read()


def test_peekable_reader_peeks_without_consuming():
    reader = PeekableReader(io.BytesIO(b"hello world"))
    assert reader.peek(5) == b"hello"
    assert reader.peek(2) == b"he"
    assert reader.read(3) == b"hel"
    assert reader.read() == b"lo world"


@pytest.mark.parametrize("level", [1, 6, 9])
def test_gzip_compressor_writes_a_standard_gzip_stream(level):
    with override_settings(DBBACKUP_GZIP_LEVEL=level):
        compressed = codecs.by_name("gzip").compress(io.BytesIO(DATA)).read()
    assert compressed[:2] == b"\x1f\x8b"
    assert gzip.decompress(compressed) == DATA


def test_gzip_written_by_the_gzip_module_is_detected_and_read():
    stream, codec = codecs.open_decompressed(io.BytesIO(gzip.compress(DATA, 9)), label="x", expected=None)
    assert codec.name == "gzip"
    assert stream.read() == DATA


def test_concatenated_gzip_members_are_read_whole():
    data = gzip.compress(b"first ") + gzip.compress(b"second")
    stream, _ = codecs.open_decompressed(io.BytesIO(data), label="x", expected="gzip")
    assert stream.read() == b"first second"


def test_plain_data_passes_through_when_no_compression_is_expected():
    stream, codec = codecs.open_decompressed(io.BytesIO(DATA), label="x", expected=None)
    assert codec is None
    assert stream.read() == DATA


def test_truncated_gzip_is_corrupt():
    stream, _ = codecs.open_decompressed(io.BytesIO(gzip.compress(DATA)[:-100]), label="x.gz", expected=None)
    with pytest.raises(CorruptBackupError, match="x.gz is not a valid gzip stream"):
        stream.read()


def test_flipped_bytes_in_gzip_are_corrupt():
    damaged = bytearray(gzip.compress(DATA))
    damaged[len(damaged) // 2] ^= 0x55
    stream, _ = codecs.open_decompressed(io.BytesIO(bytes(damaged)), label="x.gz", expected=None)
    with pytest.raises(CorruptBackupError):
        stream.read()


def test_a_name_promising_gzip_over_plain_bytes_is_refused():
    with pytest.raises(CorruptBackupError, match="named as gzip-compressed"):
        codecs.open_decompressed(io.BytesIO(b"plain text"), label="x.gz", expected="gzip")


def test_unknown_codec_name_is_a_configuration_error():
    from dbbackup.exceptions import DbbackupConfigurationError

    with pytest.raises(DbbackupConfigurationError, match="choose one of gzip"):
        codecs.by_name("lzma")


@pytest.mark.parametrize(
    "head", [b"\x85\x01\x0c", b"\xc1\x00", b"\x1f\x8b\x08"], ids=["pgp-old", "pgp-new", "gzip"]
)
def test_bytes_that_only_look_encrypted_or_compressed_pass_through_when_the_sidecar_says_so(head):
    from dbbackup.pipeline._common import open_stages

    data = head + os.urandom(5000)
    sidecar = {"dbbackup": {"encrypted": False, "compression": None, "size": len(data)}}
    stream, _ = open_stages(
        io.BytesIO(data), label="x", metadata=sidecar, encrypted=False, compression=None, passphrase=None
    )
    assert stream.read() == data
    if head.startswith(b"\x1f\x8b"):
        return  # without a sidecar, gzip's magic is trusted (django-dbbackup's backups)
    stream, _ = open_stages(
        io.BytesIO(data), label="x", metadata=None, encrypted=False, compression=None, passphrase=None
    )
    assert stream.read() == data  # a first byte alone never means GPG


def test_gzip_blocks_are_full_even_when_the_source_trickles():
    text = b"INSERT INTO t VALUES(1, 'a fairly repetitive line of SQL');\n" * 40_000

    class Trickle(io.RawIOBase):
        def __init__(self):
            self.data = io.BytesIO(text)

        def readable(self):
            return True

        def readinto(self, buffer):
            piece = self.data.read(min(len(buffer), 61))  # one SQL line at a time
            buffer[: len(piece)] = piece
            return len(piece)

    compressed = codecs.by_name("gzip").compress(Trickle()).read()
    assert gzip.decompress(compressed) == text
    assert len(compressed) < 1.2 * len(gzip.compress(text, 6))  # not thousands of tiny blocks


def test_restoring_from_local_storage_does_not_import_boto3(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DBBACKUP_TEST_DIR": str(tmp_path)}
    env["PYTHONPATH"] = str(root)
    code = (
        "import sys, django\ndjango.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('dbbackup', '-d', 'default', '-q')\n"
        "call_command('dbrestore', '-d', 'default', '--noinput', '-q')\n"
        "print('storages.backends.s3' in sys.modules, 'boto3' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_ctrl_c_as_the_hash_thread_starts_leaves_a_hash_that_closes_cleanly(monkeypatch):
    """A KeyboardInterrupt inside the first update() must stay a KeyboardInterrupt: the cleanup
    that follows (close()) may not fail with "cannot join thread before it is started"."""
    import threading

    def interrupted_start(self):
        raise KeyboardInterrupt

    piece = b"a" * BackgroundHash.BATCH  # a whole batch: handed to the thread at once
    digest = BackgroundHash()
    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    with pytest.raises(KeyboardInterrupt):
        digest.update(piece)
    monkeypatch.undo()
    digest.close()
    digest.update(piece)
    assert digest.hexdigest() == hashlib.sha256(piece).hexdigest()


def test_closing_after_an_interrupt_left_the_queue_locked_does_not_hang():
    """KeyboardInterrupt may strike inside queue.put() right after it took the queue's lock and
    leave it held by the interrupted thread; the cleanup that follows must still return."""
    import threading

    digest = BackgroundHash()
    digest.update(b"x" * BackgroundHash.BATCH)  # the worker runs
    digest._queue.mutex.acquire()  # what the interrupted put() left behind
    done = threading.Event()
    closer = threading.Thread(target=lambda: (digest.close(), done.set()), daemon=True)
    # the lock belongs to this thread; a plain Lock blocks any thread, so close() in another
    # thread sees the same held lock the interrupted thread would
    closer.start()
    assert done.wait(10), "close() hung on the queue's lock"


def test_small_pieces_are_hashed_in_order_and_handed_to_the_thread_in_batches(monkeypatch):
    """gzip reads 8 KiB at a time: one thread hand-off per piece cost more than the hashing."""
    pieces = [os.urandom(size) for size in (8192, 1, 3 * BackgroundHash.BATCH, 8192, 5000)]
    pieces += [os.urandom(8192) for _ in range(300)] + [b"tail"]
    digest = BackgroundHash()
    handed: list[int] = []
    real_put = digest._queue.put
    monkeypatch.setattr(digest._queue, "put", lambda data: handed.append(len(data or b"")) or real_put(data))
    for piece in pieces:
        digest.update(memoryview(piece))
    assert digest.hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()
    whole = sum(map(len, pieces))
    assert sum(handed) == whole
    assert len(handed) <= 2 + whole // BackgroundHash.BATCH + 1  # batches, not 306 pieces
    digest.update(b"more")  # usable again after hexdigest(), as before
    assert digest.hexdigest() == hashlib.sha256(b"".join(pieces) + b"more").hexdigest()


class _Source(io.RawIOBase):
    """A readable stream that raises after ``fail_after`` reads, and records its closing."""

    def __init__(self, chunks, fail_after=None):
        self.chunks = list(chunks)
        self.reads = 0
        self.fail_after = fail_after

    def readable(self):
        return True

    def read(self, size=-1):
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise CorruptBackupError("the source broke")
        return self.chunks.pop(0) if self.chunks else b""


def test_read_ahead_passes_the_bytes_and_the_errors_of_its_stream_through():
    assert read_ahead(_Source([b"ab", b"cd"]), name="dbbackup-test").read() == b"abcd"
    stream = read_ahead(_Source([b"ab", b"cd"], fail_after=2), name="dbbackup-test")
    assert stream.read(2) + stream.read(2) == b"abcd"
    with pytest.raises(CorruptBackupError, match="the source broke"):
        stream.read(2)


def test_closing_read_ahead_early_stops_its_thread_and_closes_its_stream():
    import threading

    source = _Source([b"x" * 1024] * 1000)
    stream = read_ahead(source, name="dbbackup-test", queue_chunks=2)
    assert stream.read(10) == b"x" * 10
    stream.close()
    assert source.closed
    assert source.reads < 10  # it stayed a couple of chunks ahead, not more
    assert [thread.name for thread in threading.enumerate() if thread.name == "dbbackup-test"] == []


def test_copy_to_file_writes_everything_in_pieces_of_at_most_write_size():
    data = os.urandom(3 * CHUNK_SIZE + 12345)

    class Recording(io.BytesIO):
        sizes: list

        def write(self, piece):
            self.sizes.append(len(piece))
            return super().write(piece)

    target = Recording()
    target.sizes = []
    assert copy_to_file(io.BytesIO(data), target) == len(data)
    assert target.getvalue() == data
    assert max(target.sizes) == WRITE_SIZE
