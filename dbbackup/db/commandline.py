"""``run_command``: django-dbbackup's way for a connector to run a tool, on top of :mod:`dbbackup.process`.

Custom connectors written for django-dbbackup call ``self.run_command(command, stdin, env)``
from their ``_create_dump`` (returning the ``stdout`` it gives back) and ``_restore_dump``
(passing the dump as ``stdin``). The contract kept here:

* ``command`` is a string split like a shell splits words (:func:`shlex.split`); no shell
  runs, so pipes and redirections are not available;
* the environment is the parent process's (when ``use_parent_env``), then the connector's
  ``ENV``, then the call's ``env``, later layers winning;
* ``stdin`` is a Django ``File`` (opened ``"rb"``), a binary file object (read from its current
  position to its end), bytes, or ``None`` (the tool reads nothing). It is read to its end into
  a private temporary file in ``DBBACKUP_TMP_DIR`` *before* the tool starts, so every check of
  the stages before it (checksum, decryption, decompression) has passed by then: a connector
  written for django-dbbackup, whose tool may commit as it reads (``sqlite3``, ``mysql``),
  never sees a damaged backup;
* the tool writes both outputs straight into private temporary files in
  ``DBBACKUP_TMP_DIR`` (already unlinked, so they vanish when closed), returned rewound to 0;
  the caller closes them;
* a non-zero exit raises :class:`~dbbackup.exceptions.CommandConnectorError`
  (``Error running: <command> (exit status N)`` and the tail of stderr), and so does a tool
  that is not installed. The connector's secrets (``connection_env()`` values, the database
  ``PASSWORD``, and ``ENV``/``env`` values whose names mention a password, secret, token or
  key) are cut out of the message and the debug log.

Unlike django-dbbackup, whole outputs are kept on disk rather than partly in memory, and the
command-name shims of its test suite (``echo``, ``cat``, ``env`` emulated in Python) do not exist.
"""

from __future__ import annotations

import io
import logging
import os
import shlex
import shutil
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, BinaryIO

from django.core.files import File

from dbbackup import process, settings
from dbbackup.exceptions import DbbackupConfigurationError
from dbbackup.streams import CHUNK_SIZE

if TYPE_CHECKING:
    from dbbackup.db.base import BaseCommandDBConnector

logger = logging.getLogger("dbbackup.command")

#: Words in a variable's name that mark its value as a secret.
SECRET_WORDS = ("PASS", "SECRET", "TOKEN", "KEY")


def secrets_of(connector: BaseCommandDBConnector, env: Mapping[str, str] | None) -> tuple[str, ...]:
    """Every value to keep out of messages when ``connector`` runs a command with ``env``."""
    values = [*connector.secrets(), str(connector.settings.get("PASSWORD") or "")]
    for layer in (connector.env, env or {}):
        values += [
            str(value)
            for key, value in layer.items()
            if value and any(word in str(key).upper() for word in SECRET_WORDS)
        ]
    return tuple(value for value in values if value)


def _input(stdin: Any) -> BinaryIO | None:
    if isinstance(stdin, File):
        return stdin.open("rb")
    if isinstance(stdin, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(stdin))
    return stdin


def _verified_copy(source: BinaryIO | None) -> BinaryIO | None:
    """``source`` read to its end into a private temporary file, rewound; ``None`` stays ``None``.

    Reading to the end is what makes the stages before raise if the backup is damaged.
    """
    if source is None:
        return None
    copy = tempfile.TemporaryFile(prefix=".dbbackup-in-", dir=settings.TMP_DIR)  # noqa: SIM115
    try:
        shutil.copyfileobj(source, copy, CHUNK_SIZE)
        copy.seek(0)
    except BaseException:
        copy.close()
        raise
    return copy


def run_command(
    connector: BaseCommandDBConnector,
    command: str,
    stdin: Any = None,
    env: Mapping[str, str] | None = None,
) -> tuple[BinaryIO, BinaryIO]:
    """Run ``command`` for ``connector``; see the module docstring for the contract."""
    argv = shlex.split(command)
    if not argv:
        raise DbbackupConfigurationError(f"{connector.path()}.run_command() was given an empty command.")
    where = f"DBBACKUP_CONNECTORS[{connector.database_name!r}]"
    tool = process.Command(
        argv=argv,
        env=process.build_env(connector.env, env, inherit=connector.use_parent_env),
        secrets=secrets_of(connector, env),
        missing_hint=f"{connector.install_hint} Or set DUMP_CMD/RESTORE_CMD in {where}.".strip(),
    )
    logger.debug("Running %s", tool.describe())
    source = _verified_copy(_input(stdin))
    # Returned open to the caller, who closes them: no context manager here.
    stdout = tempfile.TemporaryFile(prefix=".dbbackup-out-", dir=settings.TMP_DIR)  # noqa: SIM115
    stderr = tempfile.TemporaryFile(prefix=".dbbackup-err-", dir=settings.TMP_DIR)  # noqa: SIM115
    try:
        returncode = process.run_to_files(tool, source, stdout, stderr)
        if returncode != 0:
            stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - process.STDERR_TAIL_BYTES))
            tail = stderr.read().decode("utf-8", errors="replace").strip()
            raise tool.error("Error running", returncode, tail)
    except BaseException:
        stdout.close()
        stderr.close()
        raise
    finally:
        if source is not None:
            source.close()
    stdout.seek(0)
    stderr.seek(0)
    return stdout, stderr
