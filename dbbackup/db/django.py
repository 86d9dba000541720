"""The engine-neutral connector: Django's ``dumpdata`` and ``loaddata`` (``.json``).

It works for any database Django supports, so it is the fallback for engines without a
dedicated connector, and its backups restore into another engine. The dump streams:
``dumpdata`` runs on a worker thread and its JSON is compressed and stored as it is written.
Primary keys are kept and foreign keys to models with natural keys (content types,
permissions, users) are written as natural keys, so ids survive a restore and the fixture
loads into a database whose content types were numbered differently.

A restore empties the tables it restores (with ``DELETE``, unless ``-r/--no-drop``; excluded
tables are left alone)
and loads the fixture, both in one transaction, so a failure leaves the database as it was on
PostgreSQL, SQLite and MySQL/InnoDB alike (not on MyISAM tables, which have no transactions).
``loaddata`` itself reads the whole fixture into memory: Django's JSON deserializer is not
streaming.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

from django.apps import apps
from django.core.management import call_command
from django.core.management.color import no_style
from django.core.serializers.base import DeserializationError
from django.db import DatabaseError, connections, transaction

from dbbackup.db.base import BaseDBConnector
from dbbackup.exceptions import DbbackupConfigurationError, RestoreError
from dbbackup.streams import ProducerReader

_STDIN_LOCK = threading.Lock()


class _TextSink:
    """What dumpdata writes to: text, encoded and handed on as bytes."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write

    def write(self, text: str) -> int:
        self._write(text.encode("utf-8"))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class DjangoConnector(BaseDBConnector):
    """``dumpdata``/``loaddata`` through Django's serializers; any engine."""

    extension = "json"
    supports_exclude = True
    supports_no_drop = True
    drop = True
    #: loaddata resets sequences to the largest id, so ids of deleted rows may be reused.
    restores_sequences = False
    #: Fixtures hold rows, not tables: the schema comes from the project's migrations.
    restores_schema = False

    def check(self) -> None:
        self.exclude_labels()

    def excluded_tables(self) -> set[str]:
        """The tables of the excluded models, which a restore leaves alone."""
        tables = set()
        for label in self.exclude_labels():
            app_label, _, model_name = label.partition(".")
            app_config = apps.get_app_config(app_label)
            models = [app_config.get_model(model_name)] if model_name else app_config.get_models()
            for model in models:
                tables.add(model._meta.db_table)
                tables.update(
                    field.remote_field.through._meta.db_table for field in model._meta.local_many_to_many
                )
        return tables

    def empty_tables(self) -> None:
        """Delete the rows of every table the fixture restores (``DELETE``, never ``TRUNCATE``,
        so that MySQL keeps it inside the transaction); excluded tables are left alone."""
        connection = connections[self.database_name]
        excluded = self.excluded_tables()
        tables = [
            table
            for table in connection.introspection.django_table_names(only_existing=True, include_views=False)
            if table not in excluded
        ]
        connection.ops.execute_sql_flush(connection.ops.sql_flush(no_style(), tables, reset_sequences=False))

    def exclude_labels(self) -> list[str]:
        """``EXCLUDE``/``-x`` as dumpdata labels: ``app``, ``app.Model`` or a table name."""
        tables = {
            model._meta.db_table: model._meta.label for model in apps.get_models(include_auto_created=True)
        }
        labels = []
        for item in self.exclude:
            if item in tables:
                labels.append(tables[item])
                continue
            app_label, _, model_name = item.partition(".")
            try:
                app_config = apps.get_app_config(app_label)
                if model_name:
                    app_config.get_model(model_name)
            except LookupError:
                raise DbbackupConfigurationError(
                    f"Cannot exclude {item!r}: it is neither an installed app, an app.Model label nor a "
                    "model's table name."
                ) from None
            labels.append(item)
        return labels

    def _create_dump(self) -> BinaryIO:
        alias, exclude = self.database_name, self.exclude_labels()

        def produce(write: Callable[[bytes], None]) -> None:
            try:
                call_command(
                    "dumpdata",
                    format="json",
                    database=alias,
                    exclude=exclude,
                    use_natural_foreign_keys=True,
                    verbosity=0,
                    stdout=_TextSink(write),
                )
            finally:
                connections[alias].close()  # this thread's own connection

        return ProducerReader(produce, name="dbbackup-dumpdata")

    def _restore_dump(self, dump: BinaryIO) -> None:
        alias = self.database_name
        text = io.TextIOWrapper(dump, encoding="utf-8")  # loaddata closes it, and so the dump
        try:
            with transaction.atomic(using=alias):
                if self.drop:
                    self.empty_tables()
                with _stdin(text):
                    call_command("loaddata", "-", format="json", database=alias, verbosity=0)
        except UnicodeDecodeError as exc:
            raise RestoreError(f"The backup is not UTF-8 JSON; nothing was restored: {exc}") from exc
        except (DeserializationError, DatabaseError) as exc:
            raise RestoreError(f"The fixture could not be loaded; nothing was restored: {exc}") from exc
        if apps.is_installed("django.contrib.contenttypes"):
            from django.contrib.contenttypes.models import ContentType

            ContentType.objects.clear_cache()


@contextlib.contextmanager
def _stdin(text: io.TextIOBase) -> Iterator[None]:
    """``loaddata -`` reads ``sys.stdin``: point it at the backup for the duration."""
    with _STDIN_LOCK:
        saved, sys.stdin = sys.stdin, text
        try:
            yield
        finally:
            sys.stdin = saved
