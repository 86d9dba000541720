"""Models whose data the round-trip tests compare byte for byte."""

from django.db import models


class Note(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    payload = models.BinaryField(blank=True, default=b"")
    extra = models.JSONField(default=dict, blank=True)

    class Meta:
        app_label = "testapp"


class Tag(models.Model):
    note = models.ForeignKey(Note, on_delete=models.CASCADE, related_name="tags")
    label = models.CharField(max_length=50)

    class Meta:
        app_label = "testapp"
