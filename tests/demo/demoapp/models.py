from django.db import models


class Note(models.Model):
    """A row worth backing up: text in many scripts and arbitrary bytes (or none at all)."""

    title = models.CharField(max_length=200, unique=True)
    body = models.TextField(blank=True)
    payload = models.BinaryField(blank=True, null=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title
