"""What every dbbackup command shares: options, output, prompts, and the error boundary.

Commands are thin: they parse options, call :mod:`dbbackup.pipeline` and report. Any
:class:`~dbbackup.exceptions.DbbackupError` or configuration error becomes a one-line
``CommandError`` here on the command line, so users see a message, never a traceback
(``--traceback`` shows one). Through ``call_command`` the exception itself propagates: every
dbbackup exception is a ``CommandError`` subclass, so callers catch it either way.
Progress goes to stderr, as django-dbbackup does, so stdout stays clean for ``listbackups``.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from dbbackup import notify
from dbbackup.display import ProgressBar
from dbbackup.exceptions import DbbackupConfigurationError, DbbackupError

logger = logging.getLogger("dbbackup.command")


class BaseDbBackupCommand(BaseCommand):
    """Base of the dbbackup commands: ``--noinput``, ``-q/--quiet`` and error handling."""

    content_type = "db"
    #: Unattended commands (backups, pruning) e-mail the admins when they fail.
    mail_on_failure = False
    #: No system checks before running: on Django 6 they connect to every database, and a backup
    #: of a healthy database must not fail because another one is down. `manage.py check` and
    #: `dbbackup --check` run dbbackup's checks when asked.
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Django offers --skip-checks only to commands that run checks; cron lines written for
        # django-dbbackup pass it, so it is accepted (and changes nothing: none run here).
        parser.add_argument(
            "--skip-checks",
            action="store_true",
            help="Accepted for compatibility: dbbackup commands run no system checks anyway.",
        )
        return parser

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Never prompt: no confirmation, no passphrase question.",
        )
        parser.add_argument(
            "-q", "--quiet", action="store_true", default=False, help="Print nothing but errors."
        )

    def execute(self, *args: Any, **options: Any) -> Any:
        self.quiet = options.get("quiet", False)
        self.verbosity = options.get("verbosity", 1)
        self.interactive = options.get("interactive", True)
        self._failure_mailed = False
        with self._warnings_on_stderr():
            try:
                return self._execute_and_report(*args, **options)
            except (DbbackupError, ImproperlyConfigured) as exc:
                if options.get("traceback"):
                    raise
                logger.error("%s failed: %s", self.command_name(), exc, extra=self._mailed())
                if isinstance(exc, CommandError) and not getattr(self, "_called_from_command_line", False):
                    raise  # call_command callers get the very class (a CommandError subclass)
                raise CommandError(str(exc)) from exc
            except OSError as exc:  # a storage or the network failed: say so, in one line
                if options.get("traceback"):
                    raise
                logger.error("%s failed: %s", self.command_name(), exc, extra=self._mailed())
                raise CommandError(f"{type(exc).__name__}: {exc}") from exc
            except CommandError:
                raise
            except Exception as exc:  # unforeseen: one line here, the traceback in the log
                if options.get("traceback"):
                    raise
                logger.error("%s failed unexpectedly", self.command_name(), exc_info=True)
                raise CommandError(
                    f"{type(exc).__name__}: {exc} (unexpected; run with --traceback to see where)"
                ) from exc
            except KeyboardInterrupt:
                # Ctrl-C on the command line: what happened, in one line, and the shell's 130.
                # Programmatic callers (call_command) get the KeyboardInterrupt itself.
                if options.get("traceback") or not getattr(self, "_called_from_command_line", False):
                    raise
                logger.warning("%s interrupted: %s", self.command_name(), self.interrupted_outcome())
                raise CommandError(f"Interrupted: {self.interrupted_outcome()}", returncode=130) from None

    def interrupted_outcome(self) -> str:
        """What an interruption (Ctrl-C) left behind, for the one-line message."""
        return "nothing was changed."

    def _execute_and_report(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except Exception as exc:
            ours = isinstance(exc, (DbbackupError, DbbackupConfigurationError))
            if self.mail_on_failure and (ours or not isinstance(exc, CommandError)):
                self._failure_mailed = notify.mail_failure(
                    self.command_name(), exc, [options.get("passphrase") or ""]
                )
            raise

    def _mailed(self) -> dict[str, bool]:
        """Log-record extra saying whether the failure was e-mailed already (see dbbackup.log)."""
        return {notify.MAILED: getattr(self, "_failure_mailed", False)}

    @contextlib.contextmanager
    def _warnings_on_stderr(self) -> Iterator[None]:
        """Show dbbackup's warnings on stderr while the command runs, unless the project's
        logging already shows them somewhere (or -q asks for silence)."""
        package_logger = logging.getLogger("dbbackup")
        configured = any(not isinstance(h, logging.NullHandler) for h in package_logger.handlers)
        on_console = any(
            isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.stdout)
            for handler in logging.getLogger().handlers
        )
        if self.quiet or configured or on_console:
            yield
            return
        handler = logging.StreamHandler(_CommandStderr(self))
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        # The command's own error record repeats the CommandError printed anyway.
        handler.addFilter(lambda record: not (record.name == logger.name and record.levelno >= logging.ERROR))
        package_logger.addHandler(handler)
        try:
            yield
        finally:
            package_logger.removeHandler(handler)

    def command_name(self) -> str:
        return type(self).__module__.rsplit(".", 1)[-1]

    def say(self, message: str, style=None) -> None:
        """Progress for humans, on stderr; silent with ``-q`` or ``--verbosity 0``."""
        if not self.quiet and self.verbosity >= 1:
            self.stderr.write(style(message) if style else message)

    @contextlib.contextmanager
    def progress(self, description: str, unit: str = "bytes") -> Iterator[Callable[[int], object] | None]:
        """A progress bar on stderr when it is a terminal (not with -q); see :mod:`dbbackup.display`.

        Yields the callback to pass as ``progress=`` (``None`` when there is no bar).
        """
        out = getattr(self.stderr, "_out", self.stderr)
        if self.quiet or self.verbosity < 1 or not getattr(out, "isatty", lambda: False)():
            yield None
            return
        bar = ProgressBar(description, out, unit=unit)
        try:
            yield bar.update
        finally:
            bar.close()

    def ask_passphrase(self, backup: str | None = None) -> str | None:
        """Ask for the GPG passphrase of ``backup`` (empty: none) on the terminal.

        Without a terminal on stdin (cron, a pipe) nobody can answer: refuse clearly at once
        instead of letting ``getpass`` fall back to reading stdin with a warning.
        """
        nobody = CommandError(
            "The backup is encrypted and nobody is there to type its passphrase; give it with "
            "-p/--passphrase, or run with --noinput if the key has none."
        )
        if not sys.stdin or not sys.stdin.isatty():
            raise nobody
        prompt = f"GPG passphrase for {backup}" if backup else "GPG passphrase"
        try:
            return getpass.getpass(f"{prompt} (empty if the key has none): ") or None
        except EOFError:
            raise nobody from None

    def confirm(self, question: str = "Are you sure you want to continue? [Y/n] ") -> bool:
        """Ask before a destructive step; anything but an answer starting with n continues."""
        if not self.interactive:
            return True
        try:
            answer = input(question)
        except EOFError:
            raise CommandError(
                "Nobody is there to confirm (no input); run with --noinput to skip the question."
            ) from None
        return not answer.strip().lower().startswith("n")


class _CommandStderr:
    """The command's stderr as it is when written to (``execute`` replaces it after start)."""

    def __init__(self, command: BaseCommand) -> None:
        self.command = command

    def write(self, text: str) -> None:
        self.command.stderr.write(text, ending="")

    def flush(self) -> None:
        self.command.stderr.flush()
