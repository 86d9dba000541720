"""The known dataset stored in every golden backup, and its checks.

Plain Python with no imports from the test suite: ``make_fixtures.py`` copies this file into a
throwaway project that runs the released django-dbbackup, and the tests import it from here.
The model classes are passed in (``testapp.models`` there, ``tests.testapp.models`` here).
"""

from __future__ import annotations

NOTES = [
    {
        "id": 1,
        "title": "Zürich – 東京 – ☃",
        "body": "multi\nline 'quotes' \"double\" \\backslash\t tab – emoji 🎉 – NUL-free",
        "payload": bytes(range(256)),
        "extra": {"n": 1, "text": "Ünïcödé ✓", "list": [1.5, None, True], "nested": {"a": [1, 2]}},
        "tags": ["first", "ünïcode"],
    },
    {
        "id": 2,
        "title": "empty payload",
        "body": "",
        "payload": b"",
        "extra": {},
        "tags": [],
    },
    {
        "id": 4,  # id 3 was deleted: a gap the restore must keep
        "title": "binary edge cases",
        "body": "line\r\nwindows",
        "payload": b"\x00\xff\x00\xfe\\x00'\"\n\r\x1a" * 8,
        "extra": {"big": 2**40, "neg": -1, "float": 0.25, "bool": False, "str": "𝄞 clef"},
        "tags": ["x"],
    },
]


def load(note_model, tag_model, alias: str = "default") -> None:
    """Insert the dataset into empty tables, ids from the sequences (so that they advance).

    Row 3 is created and deleted: a gap in the ids that a restore must keep.
    """
    for row in NOTES:
        while True:
            note = note_model.objects.using(alias).create(
                title=row["title"], body=row["body"], payload=row["payload"], extra=row["extra"]
            )
            if note.id == row["id"]:
                break
            assert note.id < row["id"], f"table not empty: id {note.id}"
            note.delete()
        for label in row["tags"]:
            tag_model.objects.using(alias).create(note_id=row["id"], label=label)


def dump(note_model, alias: str = "default") -> list[dict]:
    """What is in the database, in the shape of ``NOTES``."""
    return [
        {
            "id": note.id,
            "title": note.title,
            "body": note.body,
            "payload": bytes(note.payload),
            "extra": note.extra,
            "tags": sorted(tag.label for tag in note.tags.all()),
        }
        for note in note_model.objects.using(alias).order_by("id").prefetch_related("tags")
    ]


def expected() -> list[dict]:
    return [{**row, "tags": sorted(row["tags"])} for row in NOTES]


#: media files (path -> bytes) stored in every golden media backup
MEDIA = {
    "readme.txt": b"plain text\n",
    "empty.bin": b"",
    "images/pixel.png": bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    ),
    "ünïcode/東京 ☃.txt": "Zürich – 東京\n".encode(),
    "deep/a/b/c.dat": bytes(range(256)) * 4,
}
