"""A connector whose dump trickles out slowly, so a test can interrupt a backup half-way."""

import time
from collections.abc import Iterator

from dbbackup.db.sqlite import SqliteConnector
from dbbackup.streams import IteratorReader

#: Each chunk of the dump, and the pause before the next one.
CHUNK = b"-- slow dump padding line\n" * 4096
PAUSE_SECONDS = 0.05


class SlowDumpConnector(SqliteConnector):
    """An SQLite SQL dump that takes about a minute: padding comments, slowly, then the dump."""

    def _create_dump(self):
        real = super()._create_dump()

        def chunks() -> Iterator[bytes]:
            try:
                for _ in range(1200):
                    yield CHUNK
                    time.sleep(PAUSE_SECONDS)
                while data := real.read(1024 * 1024):
                    yield data
            finally:
                real.close()

        return IteratorReader(chunks())
