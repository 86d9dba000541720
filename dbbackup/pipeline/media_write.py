"""The writing pass of a media restore, in its two strategies (see :mod:`dbbackup.pipeline.media`).

- :func:`restore_staged` (a stock ``FileSystemStorage``): the archive is read once into a
  staging folder, and the files are renamed into place only once all of it was verified
  (:mod:`dbbackup.media_staging`).
- :func:`restore_twice` (any other storage): after a full first pass that checked everything,
  the archive is read again and each file is written through the storage's API
  (:mod:`dbbackup.media_target`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from django.core.files.storage import Storage as DjangoStorage

from dbbackup import tar
from dbbackup.exceptions import CorruptBackupError, StorageError
from dbbackup.media_staging import StagingTarget
from dbbackup.media_target import KEPT, WRITTEN, target_for
from dbbackup.streams import DigestReader, drain

if TYPE_CHECKING:
    from dbbackup.pipeline.media import MediaRestoreResult

#: Opens the archive through every restore stage: ``(decoded stream, digest stage)``.
OpenArchive = Callable[[], tuple[BinaryIO, DigestReader]]


class Tally:
    """Counts what a restore does into its result, and reports each event as it happens.

    ``report(event, name_or_message)``: ``"kept"``, ``"link"`` or ``"skipped"``.
    """

    def __init__(self, result: MediaRestoreResult, report: Callable[[str, str], object]) -> None:
        self.result = result
        self.report = report

    def link(self, name: str) -> None:
        self.result.skipped_links += 1
        self.report("link", name)

    def skipped(self, message: str) -> None:
        self.result.skipped += 1
        self.report("skipped", message)

    def kept(self, name: str) -> None:
        self.result.kept += 1
        self.report("kept", name)


def restore_staged(
    media: DjangoStorage, replace: bool, open_archive: OpenArchive, tally: Tally
) -> DigestReader:
    """Read the archive once into a staging folder, verify all of it, then rename the files
    into place. Returns the digest stage (checked)."""
    result = tally.result
    target = StagingTarget(media, replace=replace, warn=tally.skipped, on_kept=tally.kept)
    try:
        result.removed_partials, result.removed_staging = target.prepare()
        stream, digest = open_archive()
        try:
            for member in tar.files(stream, tally.link, checked=False):
                target.stage(member.name, member.content, member.size)
            drain(stream)  # the zero records after the end marker, and every stage's checks
        finally:
            stream.close()
        if digest.expected_sha256 is not None and not digest.checked:  # never commit unverified
            raise CorruptBackupError("The media backup was not read to its end: its checksum is unchecked.")
        result.written = target.commit()
    finally:
        target.close()
    return digest


def restore_twice(
    media: DjangoStorage, replace: bool, open_archive: OpenArchive, tally: Tally
) -> DigestReader:
    """The writing pass through the storage's API, after a first pass checked the archive."""
    result = tally.result
    target = target_for(media, replace=replace, warn=tally.skipped)
    result.removed_partials = target.prepare()
    stream, digest = open_archive()
    try:
        for member in tar.files(stream, tally.link):
            try:
                outcome = target.write(member.name, member.content, member.size)
            except StorageError as exc:
                done = f"{result.written} file(s) were restored before this one."
                raise StorageError(f"{str(exc).rstrip('.')}. {done}") from exc
            if outcome == WRITTEN:
                result.written += 1
            elif outcome == KEPT:
                tally.kept(member.name)
        drain(stream)
    finally:
        stream.close()
    return digest
