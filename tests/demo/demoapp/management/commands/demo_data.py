"""``manage.py demo_data seed|change|verify``: the rows the demo backs up and restores."""

from __future__ import annotations

import hashlib

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from demoapp.models import Note


def _noise(size: int) -> bytes:
    """Deterministic bytes that look random (every byte value, no structure to compress)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


#: (title, body, payload): what ``seed`` writes and ``verify`` expects.
SAMPLE: list[tuple[str, str, bytes | None]] = [
    (
        "scripts",
        "Zürich, Ærøskøbing, Łódź · 東京都 · مرحبا بالعالم · Привет, мир · שלום · नमस्ते · 🐍🎉👩🏽‍💻",
        bytes(range(256)) * 4,
    ),
    (
        "punctuation",
        'It\'s "quoted"; back\\slash; 100% _like_;\ttab\nnew line\r\nCRLF\u2028line separator',
        b"\x00\x00\x00\xff\xfe\xfd",
    ),
    ("sql-looking", "'); DROP TABLE demoapp_note; -- /* not a comment */", b"BEGIN;\nCOMMIT;\n"),
    (
        "combining",
        "e\u0301 vs \u00e9, Å vs A\u030a, ﬁ ligature, zero\u200bwidth",
        b"\xc3\x28\xa0\xa1 invalid UTF-8",
    ),
    ("empty", "", b""),
    ("no payload", "payload is NULL, not empty", None),
    ("large", "64 KiB of noise", _noise(64 * 1024)),
]


class Command(BaseCommand):
    help = "Seed, change or verify the demo rows (unicode text and binary data)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["seed", "change", "verify"])

    def handle(self, *args, **options) -> None:
        getattr(self, options["action"])()

    @transaction.atomic
    def seed(self) -> None:
        Note.objects.all().delete()
        for title, body, payload in SAMPLE:
            Note.objects.create(title=title, body=body, payload=payload)
        self.stdout.write(f"Seeded {len(SAMPLE)} notes.")

    @transaction.atomic
    def change(self) -> None:
        first, second, third = Note.objects.order_by("id")[:3]
        first.body = "overwritten after the backup"
        first.save()
        second.payload = b"changed after the backup"
        second.save()
        third.delete()
        Note.objects.filter(title="large").delete()
        Note.objects.create(title="added after the backup", body="must vanish", payload=b"\x01")
        self.stdout.write("Changed 2 notes, deleted 2, added 1.")

    def verify(self) -> None:
        rows = [(note.title, note.body, note.payload) for note in Note.objects.order_by("id")]
        rows = [(title, body, None if payload is None else bytes(payload)) for title, body, payload in rows]
        if rows != SAMPLE:
            expected = {row[0]: row for row in SAMPLE}
            found = {row[0]: row for row in rows}
            different = [
                title for title, row in found.items() if title in expected and row != expected[title]
            ]
            raise CommandError(
                f"The notes differ from the sample: missing {sorted(expected.keys() - found.keys())}, "
                f"unexpected {sorted(found.keys() - expected.keys())}, different {different}, "
                f"order {[row[0] for row in rows]}."
            )
        self.stdout.write(f"All {len(SAMPLE)} notes match the sample, byte for byte.")
