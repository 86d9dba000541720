"""GPG encryption and decryption as streams, through python-gnupg and the ``gpg`` binary.

Encryption is public-key encryption to ``DBBACKUP_GPG_RECIPIENT``, ASCII-armoured by default
(as django-dbbackup writes it). Nothing is spooled: gpg runs on a worker thread, python-gnupg
feeds it from the stream before it and hands each chunk of output to a bounded queue, from which
:class:`GpgStream` serves ``read()``. A full queue pauses gpg, so memory stays flat.

The end of a :class:`GpgStream` is reported only after gpg exited and its status says the
operation succeeded: a wrong key, a wrong passphrase or a tampered message raise
:class:`~dbbackup.exceptions.DecryptionError` (or ``EncryptionError``) from ``read()`` instead,
so a restore never commits data gpg did not vouch for. Closing the stream early kills gpg.
Passphrases go to gpg on its stdin (``--passphrase-fd 0``), never on its command line.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, BinaryIO

from dbbackup import settings
from dbbackup.exceptions import (
    DbbackupConfigurationError,
    DbbackupError,
    DbbackupImproperlyInstalled,
    DecryptionError,
    EncryptionError,
)
from dbbackup.redaction import redact
from dbbackup.streams import CHUNK_SIZE, Cancelled, PeekableReader, ProducerReader

ARMOR_HEADER = b"-----BEGIN PGP MESSAGE-----"


class _LineReader:
    """``readline()`` over a binary pipe, returning each line as soon as it is complete."""

    def __init__(self, raw: BinaryIO, encoding: str) -> None:
        self.raw, self.encoding = raw, encoding

    def readline(self) -> str:
        return self.raw.readline().decode(self.encoding, errors="replace")


class _HopelessDecryption:
    """Tells, from gpg's status lines, when a decryption can no longer succeed.

    gpg learns at the start of a message whether any of its keys opens the session key
    (``ENC_TO`` per recipient, then ``NO_SECKEY`` or ``ERROR pkdecrypt_failed`` per key that
    cannot: missing, or a wrong passphrase), but it then reads its input to the end before it
    reports the failure. Stopping gpg as soon as every recipient's key failed makes a restore
    with the wrong key or passphrase fail at once, not after the whole backup was downloaded.
    """

    def __init__(self) -> None:
        self.recipients: set[str] = set()
        self.failures = 0

    def seen(self, key: str, value: str) -> bool:
        if key == "ENC_TO":
            self.recipients.add(value.split(" ", 1)[0])
        elif key == "NO_SECKEY" or (key == "ERROR" and value.startswith("pkdecrypt_failed")):
            self.failures += 1
        elif key in ("DECRYPTION_OKAY", "BEGIN_DECRYPTION") and self.failures < len(self.recipients):
            self.recipients.clear()  # a key opened the message: never stop this run
        return key == "DECRYPTION_FAILED" or (bool(self.recipients) and self.failures >= len(self.recipients))


def _gnupg():
    try:
        import gnupg
    except ImportError:
        raise DbbackupImproperlyInstalled(
            missing_package="python-gnupg", extra="gpg", purpose="GPG encryption"
        ) from None
    return gnupg


def make_gpg() -> Any:
    """A python-gnupg ``GPG`` for ``DBBACKUP_GPG_BINARY`` and ``DBBACKUP_GPG_HOME``."""
    gnupg = _gnupg()
    # python-gnupg logs gpg's complaints as warnings; dbbackup reports them in its own errors.
    gnupg_logger = logging.getLogger("gnupg")
    if not gnupg_logger.handlers:
        gnupg_logger.addHandler(logging.NullHandler())

    class _ProcessKeepingGPG(gnupg.GPG):
        """Remembers the gpg process (so a cancelled stream can stop it) and its result (so a
        failure that python-gnupg reports as a broken pipe still shows gpg's own status)."""

        process = None
        result = None

        def _open_subprocess(self, args, passphrase=False):
            self.process = super()._open_subprocess(args, passphrase)
            return self.process

        def _read_response(self, stream, result):
            # python-gnupg decodes stderr with a codecs reader that waits for 72 bytes before it
            # hands over a line, so a status line can wait until gpg's end; read whole lines.
            raw = getattr(stream, "stream", None)
            super()._read_response(_LineReader(raw, self.encoding) if raw else stream, result)

        def _collect_output(self, process, result, writer=None, stdin=None):
            self.result = result
            handle_status = result.handle_status
            hopeless = _HopelessDecryption()

            def handle_status_and_stop_early(key, value):
                handle_status(key, value)
                if hopeless.seen(key, value) and process.poll() is None:
                    process.kill()  # gpg would read the rest of the backup before giving up

            result.handle_status = handle_status_and_stop_early
            return super()._collect_output(process, result, writer, stdin)

    try:
        gpg = _ProcessKeepingGPG(gpgbinary=settings.GPG_BINARY, gnupghome=settings.GPG_HOME)
    except (OSError, ValueError, RuntimeError) as exc:
        raise DbbackupConfigurationError(
            f"gpg could not be started (DBBACKUP_GPG_BINARY={settings.GPG_BINARY!r}): {exc}"
        ) from exc
    gpg.buffer_size = CHUNK_SIZE
    return gpg


def is_encrypted(stream: PeekableReader) -> bool:
    """Whether ``stream`` starts with an ASCII-armoured OpenPGP message.

    Binary OpenPGP is not guessed from its first byte, which one arbitrary file in sixteen
    starts with too; such backups are recognised by their ``.gpg`` suffix or their sidecar.
    """
    return stream.peek(len(ARMOR_HEADER)).startswith(ARMOR_HEADER)


class _GuardedSource:
    """Hands gpg the stream before it, keeping any error it raises for the reader to re-raise.

    gpg must never see a clean end of input that the pipeline did not vouch for: on an error
    the input simply stops, and :class:`GpgStream` raises the error instead of ending.
    """

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        if self.error is not None:
            return b""
        try:
            return self.inner.read(size)
        except BaseException as exc:
            self.error = exc
            return b""


class GpgStream(ProducerReader):
    """The output of one gpg run over ``source``, as a readable stream.

    The end of the stream comes only once gpg exited and its status says the operation
    succeeded; otherwise ``read()`` raises ``error_class`` with ``describe_failure(result)``.
    An error of the stream before it (a checksum mismatch) is raised as itself.
    """

    def __init__(
        self,
        source: BinaryIO,
        run: Callable[[Any, _GuardedSource], Any],
        error_class: type[DbbackupError],
        describe_failure: Callable[[Any], str],
    ) -> None:
        self._source = _GuardedSource(source)
        self._gpg = make_gpg()
        self._error_class = error_class
        self._describe_failure = describe_failure
        super().__init__(self._produce_with(run), name="dbbackup-gpg", on_cancel=self._kill_gpg)

    def _produce_with(self, run: Callable[[Any, _GuardedSource], Any]):
        def produce(write: Callable[[bytes], None]) -> None:
            def on_data(chunk: bytes) -> bool:
                with contextlib.suppress(Cancelled):  # the reader is gone; gpg is being killed
                    write(chunk)
                return False  # never keep output in python-gnupg's result

            self._gpg.on_data = on_data
            try:
                outcome = run(self._gpg, self._source)
            except Exception as exc:
                self._raise_failure(self._gpg.result, exc)
                raise self._error_class(f"gpg failed: {exc}") from exc
            self._raise_failure(outcome, None)

        return produce

    def _raise_failure(self, result: Any, cause: BaseException | None) -> None:
        if self._source.error is not None:
            raise self._source.error
        if result is None:
            return
        failure = getattr(result, "on_data_failure", None)
        if failure is not None:
            raise self._error_class(f"gpg output could not be handled: {failure}") from failure
        if not result.ok:
            raise self._error_class(self._describe_failure(result)) from cause

    def _kill_gpg(self) -> None:
        process = getattr(self._gpg, "process", None)
        if process is not None and process.poll() is None:
            process.kill()

    def close(self) -> None:
        super().close()
        with contextlib.suppress(Exception):
            self._source.inner.close()


def _stderr_tail(result: Any, secrets: tuple[str, ...] = (), lines: int = 6) -> str:
    """gpg's own last words (status lines left out), with secrets cut out."""
    useful = [
        line for line in (getattr(result, "stderr", "") or "").splitlines() if not line.startswith("[GNUPG:]")
    ]
    return redact("\n".join(useful[-lines:]), secrets)


def configured_recipients() -> list[str]:
    """``DBBACKUP_GPG_RECIPIENT`` as a list (empty when unset).

    It must be a key id, fingerprint or e-mail string, or a list/tuple of them; anything else
    (a number, a dict) is a configuration error naming the setting.
    """
    recipient = settings.GPG_RECIPIENT
    if recipient is None or recipient == "":
        return []
    wanted = list(recipient) if isinstance(recipient, list | tuple) else [recipient]
    if not wanted or not all(isinstance(item, str) and item.strip() for item in wanted):
        raise DbbackupConfigurationError(
            "DBBACKUP_GPG_RECIPIENT must be the key id, fingerprint or e-mail of a public key (a "
            f"string), or a list of them, not {type(recipient).__name__} {recipient!r}."
        )
    return wanted


def check_can_encrypt() -> list[str]:
    """The recipients to encrypt to; raises a configuration error when encryption cannot work."""
    _gnupg()
    recipients = configured_recipients()
    if not recipients:
        raise DbbackupConfigurationError(
            "Encryption (-e) needs DBBACKUP_GPG_RECIPIENT: the key id, fingerprint or e-mail of the "
            "public key to encrypt to."
        )
    return recipients


def encrypt(stream: BinaryIO, *, compressed: bool = False) -> GpgStream:
    """Encrypt ``stream`` to ``DBBACKUP_GPG_RECIPIENT``.

    ``compressed`` says the stream is compressed already: gpg then does not compress it again
    (it would by default, at a cost of about three times the encryption's own time).
    """
    recipients = check_can_encrypt()
    extra_args = ["--batch", *(["--compress-algo", "none"] if compressed else [])]

    def run(gpg, source):
        return gpg.encrypt_file(
            source,
            recipients,
            armor=settings.GPG_ARMOR,
            always_trust=settings.GPG_ALWAYS_TRUST,
            extra_args=extra_args,
        )

    def describe(result) -> str:
        hint = ""
        if "invalid recipient" in (result.status or "") or "No public key" in (result.stderr or ""):
            hint = (
                f" Import the public key of {', '.join(recipients)} into the keyring"
                " (and trust it, or set DBBACKUP_GPG_ALWAYS_TRUST = True)."
            )
        return (
            f"GPG encryption failed ({result.status or 'no status'}).{hint}\n{_stderr_tail(result)}".strip()
        )

    return GpgStream(stream, run, EncryptionError, describe)


def decrypt(stream: BinaryIO, passphrase: str | None = None) -> GpgStream:
    """Decrypt ``stream`` with a secret key from the keyring (and ``passphrase`` if it has one)."""

    def run(gpg, source):
        return gpg.decrypt_file(source, passphrase=passphrase or None, extra_args=["--batch"])

    def describe(result) -> str:
        status = result.status or "no status"
        text = f"{status} {result.stderr or ''}".lower()  # read for the hint only, never shown
        if any(
            sign in text
            for sign in (
                "bad passphrase",
                "bad_passphrase",
                "missing_passphrase",
                "public key decryption failed",
            )
        ):
            hint = (
                " The passphrase given is wrong."
                if passphrase
                else " The key needs a passphrase: give it with -p/--passphrase."
            )
        elif "no secret key" in text or "no_seckey" in text:
            hint = " The secret key for this backup is not in the keyring (DBBACKUP_GPG_HOME)."
        elif "decryption_failed" in text or "integrity" in text or "mdc" in text:
            hint = " The encrypted data is damaged or was changed."
        else:
            hint = ""
        tail = _stderr_tail(result, (passphrase,) if passphrase else ())
        return f"GPG decryption failed ({status}).{hint}\n{tail}".strip()

    return GpgStream(stream, run, DecryptionError, describe)
