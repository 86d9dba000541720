"""A temporary Django database alias through which a drill restores a Django-connector backup.

The Django connector restores through ``django.db.connections[alias]`` (``loaddata``), and its
fixtures hold rows, not tables. So a drill of such a backup opens a connection under a new alias,
with the real alias's settings but ``NAME`` pointing at the scratch database, builds the schema there
with ``migrate`` (as Django's test runner builds a test database: ``run_syncdb`` included, for
apps without migrations), and points the connector at that alias.

While the alias is registered, Django's router answers for it as for the real alias:

* ``allow_migrate`` is asked about the real alias, so the scratch database gets the tables of
  exactly the models that route to the real database, and ``loaddata`` and ``dumpdata`` pick
  the same models;
* ``db_for_read``/``db_for_write`` with an object that lives in a drill's alias (the related
  managers of many-to-many fields that ``loaddata`` fills, say) return that alias, whatever the
  project's routers say: a drill's rows never go to a real database.

The routing hook is installed on :data:`django.db.router` while at least one drill alias exists
(drills in several threads share it) and removed with the last one.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

from django.apps import apps
from django.core.management import call_command
from django.db import connections, router

from dbbackup import drill_scratch
from dbbackup.exceptions import RestoreError

#: Drill alias -> the real alias it stands in for.
_STANDS_FOR: dict[str, str] = {}
_LOCK = threading.Lock()
_HOOKED = ("allow_migrate", "db_for_read", "db_for_write")
_MISSING = object()
_saved: dict[str, Any] = {}


@contextlib.contextmanager
def temporary_alias(real_alias: str, settings_dict: dict[str, Any]) -> Iterator[str]:
    """Open a connection with ``settings_dict`` under a new alias standing in for ``real_alias``.

    The connection is set in ``connections`` for this thread only (``connections[alias] = ...``,
    as Django's dynamically created connections are), not added to ``DATABASES``: Django code
    that looks an alias up (``migrate``, ``loaddata``, querysets) finds it, code that walks the
    configured databases does not. On exit the connection is closed and removed, whatever
    happened.
    """
    alias = f"dbbackup_drill_{secrets.token_hex(6)}"
    connection = drill_scratch.wrapper(real_alias, settings_dict, alias)
    connections[alias] = connection
    with _LOCK:
        if not _STANDS_FOR:
            _install()
        _STANDS_FOR[alias] = real_alias
    try:
        yield alias
    finally:
        try:
            with contextlib.suppress(Exception):
                connection.close()
            with contextlib.suppress(AttributeError):
                del connections[alias]
            if apps.is_installed("django.contrib.contenttypes"):
                from django.contrib.contenttypes.models import ContentType

                ContentType.objects.clear_cache()  # entries cached for the alias are gone with it
        finally:
            with _LOCK:
                _STANDS_FOR.pop(alias, None)
                if not _STANDS_FOR:
                    _uninstall()


def migrate(alias: str) -> None:
    """Build the schema of the project's models in ``alias`` (``migrate --run-syncdb``).

    Raises :class:`RestoreError` in one line when a migration fails.
    """
    try:
        call_command(
            "migrate",
            database=alias,
            interactive=False,
            run_syncdb=True,
            verbosity=0,
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise RestoreError(
            "The scratch database could not be built from the project's migrations: "
            f"{text[0] if text else type(exc).__name__}"
        ) from exc


def _original(name: str) -> Callable[..., Any]:
    saved = _saved.get(name, _MISSING)
    return getattr(type(router), name).__get__(router) if saved is _MISSING else saved


def _allow_migrate(db: str, app_label: str, **hints: Any) -> bool | None:
    return _original("allow_migrate")(_STANDS_FOR.get(db, db), app_label, **hints)


def _router_func(name: str) -> Callable[..., str | None]:
    def choose(model: Any, **hints: Any) -> str | None:
        instance = hints.get("instance")
        home = getattr(getattr(instance, "_state", None), "db", None)
        if home is not None and home in _STANDS_FOR:
            return home  # an object of a drill's database stays there, whatever the routers say
        return _original(name)(model, **hints)

    return choose


def _install() -> None:
    for name in _HOOKED:
        _saved[name] = router.__dict__.get(name, _MISSING)
    router.allow_migrate = _allow_migrate
    router.db_for_read = _router_func("db_for_read")
    router.db_for_write = _router_func("db_for_write")


def _uninstall() -> None:
    for name in _HOOKED:
        saved = _saved.pop(name, _MISSING)
        if saved is _MISSING:
            router.__dict__.pop(name, None)
        else:
            setattr(router, name, saved)
